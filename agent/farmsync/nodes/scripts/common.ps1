# farmsync node agent: functions shared by every op script (sent ahead of <op>.ps1).
# Same semantics and error kinds as farmsync/nodes/agent.py, the Python twin.
$ErrorActionPreference = 'Stop'

$FarmsyncRunIdPattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\z'

function New-FarmsyncError {
    # An exception carrying a NodeErrorKind value and the path at fault.
    param([string]$Kind, [string]$Detail, [string]$Path)
    $err = [System.InvalidOperationException]::new($Detail)
    $err.Data['farmsync.kind'] = $Kind
    $err.Data['farmsync.path'] = $Path
    return $err
}

function Get-FarmsyncErrorKind {
    # Map an exception to a NodeErrorKind value (same table as error_kind() in agent.py).
    param([System.Exception]$Exception)
    if ($Exception -is [System.UnauthorizedAccessException] -or
        $Exception -is [System.Security.SecurityException]) {
        return 'permission-denied'
    }
    if ($Exception -is [System.IO.DirectoryNotFoundException] -or
        $Exception -is [System.IO.FileNotFoundException] -or
        $Exception -is [System.Management.Automation.ItemNotFoundException]) {
        return 'not-found'
    }
    if ($Exception -is [System.IO.IOException]) {
        # Win32 code in the low word: 0x70 ERROR_DISK_FULL, 0x27 ERROR_HANDLE_DISK_FULL,
        # 0x50F ERROR_DISK_QUOTA_EXCEEDED, 0x5 ERROR_ACCESS_DENIED, 0x13 ERROR_WRITE_PROTECT.
        $code = $Exception.HResult -band 0xFFFF
        if ($code -eq 0x70 -or $code -eq 0x27 -or $code -eq 0x50F) { return 'disk-full' }
        if ($code -eq 0x5 -or $code -eq 0x13) { return 'permission-denied' }
    }
    return 'remote-error'
}

function Get-FarmsyncErrorInfo {
    # The protocol's error object {kind, detail, path} for a caught ErrorRecord.
    param($ErrorRecord)
    $ex = $ErrorRecord.Exception
    # .NET exceptions thrown inside method calls arrive wrapped.
    while (($ex -is [System.Management.Automation.MethodInvocationException] -or
            $ex -is [System.Management.Automation.ActionPreferenceStopException]) -and
           $null -ne $ex.InnerException) {
        $ex = $ex.InnerException
    }
    if ($ex.Data.Contains('farmsync.kind')) {
        $path = [string]$ex.Data['farmsync.path']
        if ($path -eq '') { $path = $null }
        return @{ kind = [string]$ex.Data['farmsync.kind']; detail = $ex.Message; path = $path }
    }
    return @{ kind = (Get-FarmsyncErrorKind -Exception $ex); detail = $ex.Message; path = $null }
}

function ConvertTo-FarmsyncJson {
    # Compact JSON, non-ASCII escaped as \uXXXX so the console code page cannot mangle it.
    param($Object)
    $json = ConvertTo-Json -InputObject $Object -Compress -Depth 20
    $evaluator = { param($m) '\u{0:x4}' -f [int][char]$m.Value }
    return [regex]::Replace($json, '[^\x00-\x7F]', [System.Text.RegularExpressions.MatchEvaluator]$evaluator)
}

function Write-FarmsyncLine {
    param($Object)
    [Console]::Out.Write((ConvertTo-FarmsyncJson -Object $Object) + "`n")
    [Console]::Out.Flush()
}

function Assert-FarmsyncRunId {
    # Run ids become part of file names: a safe alphabet only, no separators, no '..'.
    param($RunId)
    $text = [string]$RunId
    if (-not ($text -cmatch $FarmsyncRunIdPattern) -or $text.Contains('..')) {
        throw (New-FarmsyncError 'protocol' 'invalid run id' $null)
    }
    return $text
}

function Assert-FarmsyncUnique {
    param([string[]]$Paths)
    $seen = [System.Collections.Generic.HashSet[string]]::new()
    foreach ($path in $Paths) {
        if (-not $seen.Add($path)) {
            throw (New-FarmsyncError 'protocol' 'the same path is listed twice' $path)
        }
    }
}

function Resolve-FarmsyncPath {
    # %VAR% references are expanded on the node, then the path is made absolute.
    param([string]$Path)
    $expanded = [System.Environment]::ExpandEnvironmentVariables($Path)
    return [System.IO.Path]::GetFullPath($expanded)
}

function Get-FarmsyncStagingPath {
    param([string]$Target, [string]$RunId)
    return $Target + '.farmsync-' + $RunId + '.new'
}

function Get-FarmsyncBackupPath {
    param([string]$Target, [string]$RunId)
    return $Target + '.farmsync-' + $RunId + '.bak'
}

function Get-FarmsyncTempPath {
    param([string]$Target, [string]$RunId)
    return $Target + '.farmsync-' + $RunId + '.tmp'
}

function Get-FarmsyncSha256 {
    param([byte[]]$Bytes)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        $hash = $sha.ComputeHash($Bytes)
    } finally {
        $sha.Dispose()
    }
    return ([System.BitConverter]::ToString($hash) -replace '-', '').ToLowerInvariant()
}

function Get-FarmsyncFileHash {
    param([string]$Path)
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Read-FarmsyncBytes {
    # Bytes of a regular file; is-directory / not-found errors name $Shown.
    param([string]$Target, [string]$Shown)
    if (Test-Path -LiteralPath $Target -PathType Container) {
        throw (New-FarmsyncError 'is-directory' 'is a directory' $Shown)
    }
    if (-not (Test-Path -LiteralPath $Target -PathType Leaf)) {
        throw (New-FarmsyncError 'not-found' 'no such file' $Shown)
    }
    $bytes = [System.IO.File]::ReadAllBytes($Target)
    # The comma keeps PowerShell from unrolling the byte array into the pipeline.
    return , $bytes
}

function Remove-FarmsyncFile {
    # Remove one of our own files if it is there; $true when something was removed.
    param([string]$Path)
    if (Test-Path -LiteralPath $Path -PathType Leaf) {
        Remove-Item -LiteralPath $Path -Force
        return $true
    }
    return $false
}

function Test-FarmsyncWindows {
    return ($PSVersionTable.PSEdition -ne 'Core') -or $IsWindows
}

function Copy-FarmsyncAcl {
    # Give $To the access rules (DACL) of $From; on non-Windows PowerShell, the mode bits.
    param([string]$From, [string]$To)
    if (-not (Test-FarmsyncWindows)) {
        [System.IO.File]::SetUnixFileMode($To, [System.IO.File]::GetUnixFileMode($From))
        return
    }
    $source = Get-Acl -LiteralPath $From
    $acl = Get-Acl -LiteralPath $To
    $acl.SetSecurityDescriptorSddlForm($source.GetSecurityDescriptorSddlForm('Access'), 'Access')
    Set-Acl -LiteralPath $To -AclObject $acl
}

function Write-FarmsyncNewFile {
    # Create $Path exclusively, give it $LikePath's ACL while still empty, then write $Bytes
    # with write-through and flush to disk. A partial file is removed on failure.
    param([string]$Path, [byte[]]$Bytes, [string]$LikePath)
    $null = Remove-FarmsyncFile -Path $Path
    $stream = [System.IO.FileStream]::new($Path, [System.IO.FileMode]::CreateNew,
        [System.IO.FileAccess]::Write, [System.IO.FileShare]::None)
    $stream.Dispose()
    try {
        Copy-FarmsyncAcl -From $LikePath -To $Path
        $stream = [System.IO.FileStream]::new($Path, [System.IO.FileMode]::Truncate,
            [System.IO.FileAccess]::Write, [System.IO.FileShare]::None, 65536,
            [System.IO.FileOptions]::WriteThrough)
        try {
            $stream.Write($Bytes, 0, $Bytes.Length)
            $stream.Flush($true)
        } finally {
            $stream.Dispose()
        }
    } catch {
        $null = Remove-FarmsyncFile -Path $Path
        throw
    }
}

function Restore-FarmsyncBackup {
    # Copy a backup to a temp file beside the target, check it, then replace atomically.
    param([string]$Backup, [string]$Target, [string]$RunId)
    $bytes = Read-FarmsyncBytes -Target $Backup -Shown $Backup
    $temp = Get-FarmsyncTempPath -Target $Target -RunId $RunId
    try {
        Write-FarmsyncNewFile -Path $temp -Bytes $bytes -LikePath $Backup
        $back = Read-FarmsyncBytes -Target $temp -Shown $temp
        if ((Get-FarmsyncSha256 -Bytes $back) -ne (Get-FarmsyncSha256 -Bytes $bytes)) {
            throw (New-FarmsyncError 'verify-mismatch' 'restored copy read back differs' $temp)
        }
        if (Test-Path -LiteralPath $Target -PathType Leaf) {
            # [NullString]: a plain $null would reach .NET as '' (no backup wanted here).
            [System.IO.File]::Replace($temp, $Target, [NullString]::Value)
        } else {
            [System.IO.File]::Move($temp, $Target)
        }
    } catch {
        $null = Remove-FarmsyncFile -Path $temp
        throw
    }
}

function Get-FarmsyncBackups {
    # Backups of $Target as objects {RunId, Path}, newest first (by mtime, then name).
    param([string]$Target)
    $directory = [System.IO.Path]::GetDirectoryName($Target)
    $prefix = [System.IO.Path]::GetFileName($Target) + '.farmsync-'
    $found = [System.Collections.Generic.List[object]]::new()
    foreach ($file in [System.IO.DirectoryInfo]::new($directory).GetFiles()) {
        $name = $file.Name
        if (-not ($name.StartsWith($prefix) -and $name.EndsWith('.bak'))) { continue }
        $runId = $name.Substring($prefix.Length, $name.Length - $prefix.Length - 4)
        if (-not ($runId -cmatch $FarmsyncRunIdPattern)) { continue }
        $found.Add([pscustomobject]@{
            RunId = $runId; Path = $file.FullName; Name = $name; Ticks = $file.LastWriteTimeUtc.Ticks
        })
    }
    $sorted = @($found | Sort-Object -Property @{ Expression = 'Ticks'; Descending = $true },
        @{ Expression = 'Name'; Descending = $true })
    return , $sorted
}

function Invoke-FarmsyncRequest {
    # Run the op and write the final result line; returns the process exit code.
    param($Arguments)
    try {
        # Only the op's last output is its result (guards against stray pipeline output).
        $result = @(Invoke-FarmsyncOp -Arguments $Arguments)[-1]
        if ($null -eq $result) { $result = @{} }
        Write-FarmsyncLine -Object @{ ok = $true; result = $result }
        return 0
    } catch {
        Write-FarmsyncLine -Object @{ ok = $false; error = (Get-FarmsyncErrorInfo -ErrorRecord $_) }
        return 1
    }
}
