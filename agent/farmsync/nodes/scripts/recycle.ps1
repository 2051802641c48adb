# recycle {kind: none|command|iis, command, app_pools} -> {}
# command: the inventory's farmsync_recycle command, run as PowerShell (the node's shell);
# iis: recycle the named application pools, or every started one, via the WebAdministration
# module, or appcmd.exe where the module is missing. Output goes to stderr (diagnostics).
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncRecycleCommand {
    param([string]$Command)
    if ([string]::IsNullOrWhiteSpace($Command)) {
        throw (New-FarmsyncError 'protocol' 'recycle command is empty' $null)
    }
    $global:LASTEXITCODE = 0
    # Native programs writing to stderr must not turn into terminating errors here.
    $ErrorActionPreference = 'Continue'
    & ([ScriptBlock]::Create($Command)) 2>&1 | ForEach-Object { [Console]::Error.WriteLine([string]$_) }
    $succeeded = $?
    $ErrorActionPreference = 'Stop'
    if ($global:LASTEXITCODE -ne 0) {
        throw (New-FarmsyncError 'remote-error' ('recycle command exited with status ' + $global:LASTEXITCODE) $null)
    }
    if (-not $succeeded) {
        throw (New-FarmsyncError 'remote-error' 'recycle command failed' $null)
    }
}

function Invoke-FarmsyncRecycleIis {
    param([string[]]$Pools)
    $appcmd = Join-Path -Path $env:windir -ChildPath 'System32\inetsrv\appcmd.exe'
    if (Get-Module -ListAvailable -Name WebAdministration) {
        Import-Module WebAdministration
        if ($Pools.Count -eq 0) {
            $Pools = @(Get-ChildItem -LiteralPath 'IIS:\AppPools' |
                Where-Object { $_.State -eq 'Started' } | ForEach-Object { $_.Name })
        }
        foreach ($pool in $Pools) { Restart-WebAppPool -Name $pool }
        return
    }
    if (Test-Path -LiteralPath $appcmd -PathType Leaf) {
        if ($Pools.Count -eq 0) {
            $Pools = @(& $appcmd list apppool '/state:Started' '/text:name')
            if ($LASTEXITCODE -ne 0) {
                throw (New-FarmsyncError 'remote-error' ('appcmd list exited with status ' + $LASTEXITCODE) $null)
            }
        }
        foreach ($pool in $Pools) {
            & $appcmd recycle apppool ('/apppool.name:' + $pool) | ForEach-Object { [Console]::Error.WriteLine([string]$_) }
            if ($LASTEXITCODE -ne 0) {
                throw (New-FarmsyncError 'remote-error' ('appcmd recycle exited with status ' + $LASTEXITCODE) $null)
            }
        }
        return
    }
    throw (New-FarmsyncError 'not-found' 'IIS is not installed (no WebAdministration module, no appcmd.exe)' $null)
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $kind = [string]$Arguments.kind
    if ($kind -eq 'none') {
        return @{}
    }
    if ($kind -eq 'command') {
        Invoke-FarmsyncRecycleCommand -Command ([string]$Arguments.command)
        return @{}
    }
    if ($kind -eq 'iis') {
        $pools = @(@($Arguments.app_pools) | Where-Object { $_ } | ForEach-Object { [string]$_ })
        Invoke-FarmsyncRecycleIis -Pools $pools
        return @{}
    }
    throw (New-FarmsyncError 'protocol' 'unknown recycle kind' $null)
}
