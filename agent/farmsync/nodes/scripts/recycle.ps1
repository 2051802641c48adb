# recycle {kind: none|command|iis, command, app_pools} -> {} (+ warnings)
# command: the inventory's farmsync_recycle command, run by the node's command interpreter,
# cmd.exe /d /s /c "<command>", exactly as the twin runs it (PROTOCOL.md); a ScriptBlock
# would put inventory text into script block logging. Its output goes to stderr.
# iis: through Microsoft.Web.Administration (no cmdlet sees a pool name): the named pools,
# or every pool; pools that are not Started are skipped with a warning (recycling a stopped
# pool fails and would start nothing). IIS absent and WAS stopped are clear errors.
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncRecycleCommand {
    param([string]$Command)
    if ([string]::IsNullOrWhiteSpace($Command)) {
        throw (New-FarmsyncError 'protocol' 'recycle command is empty' $null)
    }
    $start = [System.Diagnostics.ProcessStartInfo]::new()
    $start.FileName = [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'cmd.exe')
    $start.Arguments = '/d /s /c "' + $Command + '"'
    $start.UseShellExecute = $false
    $start.RedirectStandardInput = $true
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $process = [System.Diagnostics.Process]::Start($start)
    try {
        $process.StandardInput.Close()
        $out = $process.StandardOutput.ReadToEndAsync()
        $err = $process.StandardError.ReadToEndAsync()
        $process.WaitForExit()
        [Console]::Error.Write($out.Result)
        [Console]::Error.Write($err.Result)
        if ($process.ExitCode -ne 0) {
            throw (New-FarmsyncError 'remote-error' ('recycle command exited with status ' + $process.ExitCode) $null)
        }
    } finally {
        $process.Dispose()
    }
}

function Get-FarmsyncServerManager {
    # IIS's own configuration API; its absence means IIS is not installed.
    $dll = [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'inetsrv\Microsoft.Web.Administration.dll')
    if (-not [System.IO.File]::Exists($dll)) {
        throw (New-FarmsyncError 'not-found' 'IIS is not installed on this node' $null)
    }
    $null = [System.Reflection.Assembly]::LoadFrom($dll)
    return [Microsoft.Web.Administration.ServerManager]::new()
}

function Assert-FarmsyncWasRunning {
    # Pool states and recycling go through the Windows Process Activation Service.
    Add-Type -AssemblyName 'System.ServiceProcess'
    $was = [System.ServiceProcess.ServiceController]::new('WAS')
    try {
        $status = [string]$was.Status
    } catch {
        throw (New-FarmsyncError 'not-found' 'the Windows Process Activation Service (WAS) is not installed' $null)
    } finally {
        $was.Dispose()
    }
    if ($status -ne 'Running') {
        throw (New-FarmsyncError 'remote-error' ('the Windows Process Activation Service (WAS) is ' + $status + '; start it (Start-Service WAS)') $null)
    }
}

function Invoke-FarmsyncRecycleIis {
    # Same rules as plan_iis_recycle in agent.py.
    param([object[]]$Pools)
    $manager = Get-FarmsyncServerManager
    Assert-FarmsyncWasRunning
    try {
        $wanted = [System.Collections.Generic.List[string]]::new()
        if ($Pools.Count -eq 0) {
            foreach ($pool in $manager.ApplicationPools) { $wanted.Add($pool.Name) }
        } else {
            foreach ($name in $Pools) { $wanted.Add($name) }
        }
        foreach ($name in $wanted) {
            # ApplicationPools[name] compares names case-insensitively, as IIS does.
            $pool = $manager.ApplicationPools[$name]
            if ($null -eq $pool) {
                throw (New-FarmsyncError 'not-found' ("no IIS application pool named '" + $name + "'") $null)
            }
            $state = [string]$pool.State
            if ($state -ne 'Started') {
                Add-FarmsyncWarning -Text ("app pool '" + $pool.Name + "' is " + $state + ': not recycled')
                continue
            }
            $null = $pool.Recycle()
        }
    } finally {
        $manager.Dispose()
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $kind = [string]$Arguments.kind
    if ($kind -ceq 'none') {
        return @{}
    }
    if ($kind -ceq 'command') {
        Invoke-FarmsyncRecycleCommand -Command ([string]$Arguments.command)
        return @{}
    }
    if ($kind -ceq 'iis') {
        Invoke-FarmsyncRecycleIis -Pools $Arguments.app_pools
        return @{}
    }
    throw (New-FarmsyncError 'protocol' 'unknown recycle kind' $null)
}
