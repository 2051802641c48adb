# farmsync node agent: functions shared by every op script (sent ahead of <op>.ps1).
# Same semantics and error kinds as farmsync/nodes/agent.py, the Python twin.
$ErrorActionPreference = 'Stop'

$FarmsyncRunIdPattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\z'
# Largest file a read takes (contract.MAX_FILE_BYTES): checked before reading, and the read
# stops one byte past it.
$FarmsyncMaxFileBytes = 8 * 1024 * 1024

# A file's identity: volume serial number and file index from GetFileInformationByHandle
# (kernel32; .NET 4.6 has no managed call for it), as "<serial>:<index>" in lower-case hex,
# the same form as the Python twin's (st_dev, st_ino). Fixed source, compiled once per process.
$FarmsyncFileIdSource = @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
namespace Farmsync {
    public static class FileIdentity {
        [StructLayout(LayoutKind.Sequential)]
        private struct ByHandleFileInformation {
            public uint FileAttributes;
            public System.Runtime.InteropServices.ComTypes.FILETIME CreationTime;
            public System.Runtime.InteropServices.ComTypes.FILETIME LastAccessTime;
            public System.Runtime.InteropServices.ComTypes.FILETIME LastWriteTime;
            public uint VolumeSerialNumber;
            public uint FileSizeHigh;
            public uint FileSizeLow;
            public uint NumberOfLinks;
            public uint FileIndexHigh;
            public uint FileIndexLow;
        }
        [DllImport("kernel32.dll", SetLastError = true)]
        private static extern bool GetFileInformationByHandle(SafeFileHandle file, out ByHandleFileInformation info);
        public static string Of(SafeFileHandle file) {
            ByHandleFileInformation info;
            if (!GetFileInformationByHandle(file, out info)) {
                throw new Win32Exception(Marshal.GetLastWin32Error());
            }
            ulong index = ((ulong)info.FileIndexHigh << 32) | info.FileIndexLow;
            return info.VolumeSerialNumber.ToString("x") + ":" + index.ToString("x");
        }
    }
}
'@

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

function Open-FarmsyncRegularFile {
    # A read stream on a regular file of at most $FarmsyncMaxFileBytes; is-directory,
    # not-found, not-a-regular-file and too-large errors name $Shown. The caller disposes it.
    param([string]$Target, [string]$Shown)
    if (Test-Path -LiteralPath $Target -PathType Container) {
        throw (New-FarmsyncError 'is-directory' 'is a directory' $Shown)
    }
    if (-not (Test-Path -LiteralPath $Target -PathType Leaf)) {
        throw (New-FarmsyncError 'not-found' 'no such file' $Shown)
    }
    try {
        $stream = [System.IO.FileStream]::new($Target, [System.IO.FileMode]::Open,
            [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
    } catch [System.NotSupportedException], [System.ArgumentException] {
        # FileStream refuses device paths (\\.\..., reserved names such as NUL or COM1).
        throw (New-FarmsyncError 'not-a-regular-file' 'not a regular file' $Shown)
    }
    if (-not $stream.CanSeek) {
        # A pipe or a character device: no length, possibly no end.
        $stream.Dispose()
        throw (New-FarmsyncError 'not-a-regular-file' 'not a regular file' $Shown)
    }
    if ($stream.Length -gt $FarmsyncMaxFileBytes) {
        $stream.Dispose()
        throw (New-FarmsyncError 'too-large' 'larger than 8 MiB' $Shown)
    }
    return $stream
}

function Read-FarmsyncStream {
    # The stream's bytes, reading at most $FarmsyncMaxFileBytes + 1 of them.
    param([System.IO.FileStream]$Stream, [string]$Shown)
    $buffer = New-Object byte[] ($FarmsyncMaxFileBytes + 1)
    $total = 0
    while ($total -lt $buffer.Length) {
        $count = $Stream.Read($buffer, $total, $buffer.Length - $total)
        if ($count -le 0) { break }
        $total += $count
    }
    if ($total -gt $FarmsyncMaxFileBytes) {
        # It grew past the limit while being read.
        throw (New-FarmsyncError 'too-large' 'larger than 8 MiB' $Shown)
    }
    $bytes = New-Object byte[] $total
    [System.Array]::Copy($buffer, $bytes, $total)
    return , $bytes
}

function Read-FarmsyncBytes {
    # Bytes of a regular file (see Open-FarmsyncRegularFile for the refusals).
    param([string]$Target, [string]$Shown)
    $stream = Open-FarmsyncRegularFile -Target $Target -Shown $Shown
    try {
        $bytes = Read-FarmsyncStream -Stream $stream -Shown $Shown
    } finally {
        $stream.Dispose()
    }
    # The comma keeps PowerShell from unrolling the byte array into the pipeline.
    return , $bytes
}

function Get-FarmsyncFileId {
    # The identity of the file open in $Stream, or $null where kernel32 is not there.
    param([System.IO.FileStream]$Stream)
    # Where Add-Type is not allowed (constrained language), the file has no id: the read
    # still works, and the exclusive backup still protects a file reached twice.
    if (-not (Test-FarmsyncWindows)) { return $null }
    try {
        if ($null -eq ('Farmsync.FileIdentity' -as [type])) {
            Add-Type -TypeDefinition $FarmsyncFileIdSource
        }
        return [Farmsync.FileIdentity]::Of($Stream.SafeFileHandle)
    } catch {
        return $null
    }
}

function Get-FarmsyncMachineId {
    # MachineGuid from the 64-bit registry view (a 32-bit PowerShell would otherwise be sent
    # to WOW6432Node, which has none), lower-case; $null when it cannot be read.
    try {
        $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey(
            [Microsoft.Win32.RegistryHive]::LocalMachine, [Microsoft.Win32.RegistryView]::Registry64)
        try {
            $key = $base.OpenSubKey('SOFTWARE\Microsoft\Cryptography')
            if ($null -eq $key) { return $null }
            try {
                $value = $key.GetValue('MachineGuid')
            } finally {
                $key.Dispose()
            }
        } finally {
            $base.Dispose()
        }
    } catch {
        return $null
    }
    if ($null -eq $value) { return $null }
    return ([string]$value).ToLowerInvariant()
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
    # Without -Exclusive a leftover of an earlier attempt of the run (staging or temp file) is
    # removed first; with it (backups) an existing file makes CreateNew fail and stays.
    param([string]$Path, [byte[]]$Bytes, [string]$LikePath, [switch]$Exclusive)
    if (-not $Exclusive) { $null = Remove-FarmsyncFile -Path $Path }
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
    # Backups of $Target as objects {RunId, Path}, newest run first. Ordered by run id (the
    # controller's UTC timestamps), never by file time: a node whose clock once ran ahead
    # must not keep old backups over the real ones.
    param([string]$Target)
    $directory = [System.IO.Path]::GetDirectoryName($Target)
    $prefix = [System.IO.Path]::GetFileName($Target) + '.farmsync-'
    $found = [System.Collections.Generic.List[object]]::new()
    foreach ($file in [System.IO.DirectoryInfo]::new($directory).GetFiles()) {
        $name = $file.Name
        if (-not ($name.StartsWith($prefix) -and $name.EndsWith('.bak'))) { continue }
        $runId = $name.Substring($prefix.Length, $name.Length - $prefix.Length - 4)
        if (-not ($runId -cmatch $FarmsyncRunIdPattern)) { continue }
        $found.Add([pscustomobject]@{ RunId = $runId; Path = $file.FullName })
    }
    # Ordinal comparison, as Python's sorted() on the controller and in the twin.
    $found.Sort([System.Comparison[object]]{ param($a, $b) [string]::CompareOrdinal($b.RunId, $a.RunId) })
    return , $found.ToArray()
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
