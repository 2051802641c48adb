# doctor {paths} -> {os, agent, powershell, dotnet, language_mode, fips, module_logging,
#                    script_block_logging, time, files: [...], iis}
# Read-only preflight (PROTOCOL.md, "doctor"), same fields as doctor_probe.py in the twin.
# Each managed file is opened for append and closed with no byte written (ACLs, read-only
# attribute, a file another process denies writers), and a probe file is created and
# removed beside it (the directory must take the staging file). Nothing else is written.
$ErrorActionPreference = 'Stop'

function Get-FarmsyncPolicyFlag {
    # A DWORD policy value under HKLM as $true/$false ($false when not set; $null off Windows).
    param([string]$Key, [string]$Name)
    if (-not (Test-FarmsyncWindows)) { return $null }
    $value = [Microsoft.Win32.Registry]::GetValue('HKEY_LOCAL_MACHINE\' + $Key, $Name, $null)
    return ($null -ne $value -and [int]$value -eq 1)
}

function Get-FarmsyncDotNet {
    # The installed .NET Framework 4.x: its Release number names the version.
    if ($PSVersionTable.PSEdition -eq 'Core') { return ('.NET ' + [System.Environment]::Version) }
    $release = [Microsoft.Win32.Registry]::GetValue(
        'HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full', 'Release', $null)
    if ($null -eq $release) { return ('CLR ' + [System.Environment]::Version) }
    $release = [int]$release
    $names = @(
        @(533320, '4.8.1'), @(528040, '4.8'), @(461808, '4.7.2'), @(461308, '4.7.1'),
        @(460798, '4.7'), @(394802, '4.6.2'), @(394254, '4.6.1'), @(393295, '4.6'))
    foreach ($pair in $names) {
        if ($release -ge $pair[0]) { return ($pair[1] + ' (release ' + $release + ')') }
    }
    return ('older than 4.6 (release ' + $release + ')')
}

function Test-FarmsyncReplaceable {
    # {path, exists, size, free_bytes, replaceable, error_kind?, error?} for one managed file.
    param([string]$Path)
    $entry = @{ path = $Path; exists = $false; size = $null; free_bytes = $null; replaceable = $false }
    $step = 'resolve'
    try {
        $target = Resolve-FarmsyncPath -Path $Path
        $step = 'free space'
        $drive = [System.IO.DriveInfo]::new([System.IO.Path]::GetPathRoot($target))
        $entry.free_bytes = $drive.AvailableFreeSpace
        $step = 'stat'
        if ([System.IO.Directory]::Exists($target)) {
            $entry.exists = $true
            throw (New-FarmsyncError 'is-directory' 'not a regular file' $null)
        }
        if (-not [System.IO.File]::Exists($target)) {
            throw (New-FarmsyncError 'not-found' 'no such file' $null)
        }
        $entry.exists = $true
        $info = [System.IO.FileInfo]::new($target)
        $entry.size = $info.Length
        $step = 'check'
        Assert-FarmsyncNotLink -Target $target -Shown $Path
        $step = 'open for append'
        $stream = [System.IO.FileStream]::new($target, [System.IO.FileMode]::Append,
            [System.IO.FileAccess]::Write, [System.IO.FileShare]::ReadWrite)
        $stream.Dispose()
        $step = 'create a file beside it'
        $probe = $target + '.farmsync-doctor-' + $PID + '.tmp'
        $stream = [System.IO.FileStream]::new($probe, [System.IO.FileMode]::CreateNew,
            [System.IO.FileAccess]::Write, [System.IO.FileShare]::None)
        $stream.Dispose()
        [System.IO.File]::Delete($probe)
        $entry.replaceable = $true
    } catch {
        $info = Get-FarmsyncErrorInfo -ErrorRecord $_
        $entry.error_kind = $info.kind
        $entry.error = $step + ': ' + $info.detail
    }
    return $entry
}

function Get-FarmsyncIis {
    # {installed, was, pools: [{name, state, runtime, bitness}]}, or installed = $false.
    if (-not (Test-FarmsyncWindows)) { return $null }
    $iis = @{ installed = $false; was = $null; pools = @() }
    $dll = [System.IO.Path]::Combine([System.Environment]::SystemDirectory, 'inetsrv\Microsoft.Web.Administration.dll')
    if (-not [System.IO.File]::Exists($dll)) { return $iis }
    $iis.installed = $true
    Add-Type -AssemblyName 'System.ServiceProcess'
    $was = [System.ServiceProcess.ServiceController]::new('WAS')
    try {
        $iis.was = [string]$was.Status
    } catch {
        $iis.was = 'absent'
    } finally {
        $was.Dispose()
    }
    $null = [System.Reflection.Assembly]::LoadFrom($dll)
    $manager = [Microsoft.Web.Administration.ServerManager]::new()
    try {
        $pools = [System.Collections.Generic.List[object]]::new()
        foreach ($pool in $manager.ApplicationPools) {
            $state = 'unknown'
            try { $state = [string]$pool.State } catch { $state = 'unknown (WAS not answering)' }
            $bitness = 64
            if ($pool.Enable32BitAppOnWin64 -or -not [System.Environment]::Is64BitOperatingSystem) { $bitness = 32 }
            $pools.Add(@{ name = $pool.Name; state = $state; runtime = $pool.ManagedRuntimeVersion; bitness = $bitness })
        }
        $iis.pools = $pools.ToArray()
    } finally {
        $manager.Dispose()
    }
    return $iis
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $files = [System.Collections.Generic.List[object]]::new()
    foreach ($path in $Arguments.paths) { $files.Add((Test-FarmsyncReplaceable -Path $path)) }
    $policies = 'SOFTWARE\Policies\Microsoft\Windows\PowerShell'
    $iis = $null
    try { $iis = Get-FarmsyncIis } catch { Add-FarmsyncWarning -Text ('IIS could not be inspected: ' + (Get-FarmsyncErrorInfo -ErrorRecord $_).detail) }
    return @{
        os = [System.Environment]::OSVersion.VersionString
        agent = 'Windows PowerShell ' + $PSVersionTable.PSVersion + ' (' + $PSVersionTable.PSEdition + ')'
        powershell = [string]$PSVersionTable.PSVersion
        dotnet = (Get-FarmsyncDotNet)
        language_mode = [string]$ExecutionContext.SessionState.LanguageMode
        fips = (Get-FarmsyncPolicyFlag -Key 'SYSTEM\CurrentControlSet\Control\Lsa\FipsAlgorithmPolicy' -Name 'Enabled')
        module_logging = (Get-FarmsyncPolicyFlag -Key ($policies + '\ModuleLogging') -Name 'EnableModuleLogging')
        script_block_logging = (Get-FarmsyncPolicyFlag -Key ($policies + '\ScriptBlockLogging') -Name 'EnableScriptBlockLogging')
        time = [System.DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds() / 1000.0
        files = $files.ToArray()
        iis = $iis
    }
}
