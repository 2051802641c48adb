# farmsync node agent: functions shared by every op script (sent ahead of <op>.ps1, after the
# generated argument table of protocol.py). Same semantics and error kinds as
# farmsync/nodes/agent.py, the Python twin; the protocol is written down in PROTOCOL.md.
#
# Rules every script here keeps (tests/nodes/test_ps1_syntax.py checks them on the syntax
# tree): request data (paths, contents, hashes) reaches only .NET methods and farmsync's own
# script functions, never a cmdlet: module logging (event 4103) records cmdlet parameters and
# pipeline input. A cmdlet gets constant arguments only; nothing reads $input.
# The floor is Windows PowerShell 5.1 on .NET 4.6 (bootstrap.ps1 refuses anything older before
# this script is loaded), so [Type]::new() and .NET 4.6 APIs are used freely.
$ErrorActionPreference = 'Stop'

$FarmsyncRunIdPattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\z'
$FarmsyncJsonToken = '"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|[{}\[\]:,]'
$FarmsyncWarnings = [System.Collections.Generic.List[string]]::new()
# Largest file a read takes (contract.MAX_FILE_BYTES): checked before reading, and the read
# stops one byte past it.
$FarmsyncMaxFileBytes = 8 * 1024 * 1024
# Win32 errors worth a retry of a replace (protocol.BUSY_WIN32_ERRORS): sharing violation, lock
# violation, unable to remove replaced, unable to move replacement.
$FarmsyncBusyCodes = @(32, 33, 1175, 1176)
$FarmsyncReplaceAttempts = 8
$FarmsyncReplaceFirstDelayMs = 50


function New-FarmsyncError {
    # An exception carrying a NodeErrorKind value and the path at fault.
    param([string]$Kind, [string]$Detail, [string]$Path)
    $err = [System.InvalidOperationException]::new($Detail)
    $err.Data['farmsync.kind'] = $Kind
    $err.Data['farmsync.path'] = $Path
    return $err
}

function Get-FarmsyncWin32Code {
    # The Win32 error code an exception carries (HRESULT 0x8007xxxx), or 0.
    param([System.Exception]$Exception)
    # Shift and mask, rather than compare with 0x80070000: how PowerShell types a hex literal
    # above 0x7FFFFFFF differs between versions.
    $hresult = $Exception.HResult
    if ((($hresult -shr 16) -band 0xFFFF) -eq 0x8007) { return ($hresult -band 0xFFFF) }
    return 0
}

function Get-FarmsyncInnerException {
    # .NET exceptions thrown inside method calls arrive wrapped.
    param([System.Exception]$Exception)
    $ex = $Exception
    while ($ex -is [System.Management.Automation.MethodInvocationException] -and
           $null -ne $ex.InnerException) {
        $ex = $ex.InnerException
    }
    return $ex
}

function Get-FarmsyncErrorKind {
    # Map an exception to a NodeErrorKind value (same table as error_kind() in agent.py).
    param([System.Exception]$Exception)
    if ($Exception -is [System.UnauthorizedAccessException] -or
        $Exception -is [System.Security.SecurityException]) {
        return 'permission-denied'
    }
    if ($Exception -is [System.IO.DirectoryNotFoundException] -or
        $Exception -is [System.IO.FileNotFoundException]) {
        return 'not-found'
    }
    if ($Exception -is [System.IO.IOException]) {
        # 0x70 ERROR_DISK_FULL, 0x27 ERROR_HANDLE_DISK_FULL, 0x50F ERROR_DISK_QUOTA_EXCEEDED,
        # 0x5 ERROR_ACCESS_DENIED, 0x13 ERROR_WRITE_PROTECT.
        $code = $Exception.HResult -band 0xFFFF
        if ($code -eq 0x70 -or $code -eq 0x27 -or $code -eq 0x50F) { return 'disk-full' }
        if ($code -eq 0x5 -or $code -eq 0x13) { return 'permission-denied' }
    }
    return 'remote-error'
}

function Get-FarmsyncShortMessage {
    # What went wrong, cut the way agent.py cuts an OSError to its strerror: the system's text
    # for a Win32 code (it names no file), else the first line with quoted parts elided. A .NET
    # message can quote a path or a value; it must never quote file contents.
    param([System.Exception]$Exception)
    $code = Get-FarmsyncWin32Code -Exception $Exception
    if ($code -ne 0) {
        return ([System.ComponentModel.Win32Exception]::new($code)).Message.TrimEnd('.', ' ', "`r", "`n")
    }
    $first = ([string]$Exception.Message -split "`n")[0].Trim()
    $first = [regex]::Replace($first, '''[^'']*''|"[^"]*"', '...')
    if ($first.Length -gt 200) { $first = $first.Substring(0, 200) + '...' }
    return $Exception.GetType().Name + ': ' + $first
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
    return @{
        kind = (Get-FarmsyncErrorKind -Exception $ex)
        detail = (Get-FarmsyncShortMessage -Exception $ex)
        path = $null
    }
}

# --- JSON in and out, in .NET calls (ConvertFrom-Json / ConvertTo-Json are cmdlets) ----------

function ConvertFrom-FarmsyncJsonText {
    # Parse JSON text: objects become ordinal (case-sensitive) Dictionary[string, object],
    # arrays object[], integers [long], other numbers [double].
    param([string]$Json)
    $tokens = [regex]::Matches($Json, $FarmsyncJsonToken)
    $rest = [regex]::Replace($Json, $FarmsyncJsonToken, '')
    if ($rest.Trim().Length -ne 0) { throw (New-FarmsyncError 'protocol' 'request is not JSON' $null) }
    $state = @{ Tokens = $tokens; Index = 0 }
    $value = Read-FarmsyncJsonValue -State $state
    if ($state.Index -ne $tokens.Count) { throw (New-FarmsyncError 'protocol' 'request is not JSON' $null) }
    return , $value
}

function Read-FarmsyncJsonToken {
    param($State)
    if ($State.Index -ge $State.Tokens.Count) {
        throw (New-FarmsyncError 'protocol' 'request is not JSON' $null)
    }
    $token = $State.Tokens[$State.Index].Value
    $State.Index = $State.Index + 1
    return $token
}

function Read-FarmsyncJsonValue {
    param($State)
    $token = Read-FarmsyncJsonToken -State $State
    if ($token -ceq '{') {
        $object = [System.Collections.Generic.Dictionary[string, object]]::new([System.StringComparer]::Ordinal)
        if ($State.Index -lt $State.Tokens.Count -and $State.Tokens[$State.Index].Value -ceq '}') {
            $State.Index = $State.Index + 1
            return , $object
        }
        while ($true) {
            $key = Read-FarmsyncJsonToken -State $State
            if (-not $key.StartsWith('"') -or (Read-FarmsyncJsonToken -State $State) -cne ':') {
                throw (New-FarmsyncError 'protocol' 'request is not JSON' $null)
            }
            $object[[regex]::Unescape($key.Substring(1, $key.Length - 2))] = Read-FarmsyncJsonValue -State $State
            $next = Read-FarmsyncJsonToken -State $State
            if ($next -ceq '}') { return , $object }
            if ($next -cne ',') { throw (New-FarmsyncError 'protocol' 'request is not JSON' $null) }
        }
    }
    if ($token -ceq '[') {
        $list = [System.Collections.Generic.List[object]]::new()
        if ($State.Index -lt $State.Tokens.Count -and $State.Tokens[$State.Index].Value -ceq ']') {
            $State.Index = $State.Index + 1
            return , $list.ToArray()
        }
        while ($true) {
            $list.Add((Read-FarmsyncJsonValue -State $State))
            $next = Read-FarmsyncJsonToken -State $State
            if ($next -ceq ']') { return , $list.ToArray() }
            if ($next -cne ',') { throw (New-FarmsyncError 'protocol' 'request is not JSON' $null) }
        }
    }
    if ($token.StartsWith('"')) {
        # JSON's escapes (\" \\ \/ \b \f \n \r \t \uXXXX) are a subset of Regex.Unescape's.
        return [regex]::Unescape($token.Substring(1, $token.Length - 2))
    }
    if ($token -ceq 'true') { return $true }
    if ($token -ceq 'false') { return $false }
    if ($token -ceq 'null') { return $null }
    if ($token -cmatch '^-?[0-9]+$') {
        return [long]::Parse($token, [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($token -cmatch '^-?[0-9]') {
        return [double]::Parse($token, [System.Globalization.CultureInfo]::InvariantCulture)
    }
    throw (New-FarmsyncError 'protocol' 'request is not JSON' $null)
}

function ConvertTo-FarmsyncJsonString {
    # A JSON string literal, ASCII only (\uXXXX) so the console code page cannot mangle it.
    param([string]$Text)
    $evaluator = { param($m) '\u{0:x4}' -f [int][char]$m.Value }
    $escaped = [regex]::Replace($Text, '[\x00-\x1f"\\\x7f-\uffff]',
        [System.Text.RegularExpressions.MatchEvaluator]$evaluator)
    return '"' + $escaped + '"'
}

function ConvertTo-FarmsyncJson {
    # Compact JSON of a result: hashtables, arrays and lists, strings, numbers, booleans, null.
    param($Object)
    if ($null -eq $Object) { return 'null' }
    if ($Object -is [bool]) { if ($Object) { return 'true' } else { return 'false' } }
    if ($Object -is [string]) { return (ConvertTo-FarmsyncJsonString -Text $Object) }
    if ($Object -is [int] -or $Object -is [long] -or $Object -is [double] -or $Object -is [decimal]) {
        return ([System.Convert]::ToString($Object, [System.Globalization.CultureInfo]::InvariantCulture))
    }
    $parts = [System.Collections.Generic.List[string]]::new()
    if ($Object -is [System.Collections.IDictionary]) {
        foreach ($key in $Object.Keys) {
            $parts.Add((ConvertTo-FarmsyncJsonString -Text ([string]$key)) + ':' + (ConvertTo-FarmsyncJson -Object $Object[$key]))
        }
        return '{' + [string]::Join(',', $parts) + '}'
    }
    if ($Object -is [System.Collections.IEnumerable]) {
        foreach ($entry in $Object) { $parts.Add((ConvertTo-FarmsyncJson -Object $entry)) }
        return '[' + [string]::Join(',', $parts) + ']'
    }
    return (ConvertTo-FarmsyncJsonString -Text ([string]$Object))
}

function Write-FarmsyncLine {
    param($Object)
    [Console]::Out.Write((ConvertTo-FarmsyncJson -Object $Object) + "`n")
    [Console]::Out.Flush()
}

function Add-FarmsyncWarning {
    # Text for the operator, returned in the answer's "warnings" (never file contents).
    param([string]$Text)
    $FarmsyncWarnings.Add($Text)
}

# --- arguments ---------------------------------------------------------------------------

function Test-FarmsyncType {
    # Whether a decoded JSON value has a protocol type (protocol.py: TYPES).
    param($Value, [string]$Type)
    if ($Type -ceq 'string') { return ($Value -is [string]) }
    if ($Type -ceq 'string?') { return ($null -eq $Value -or $Value -is [string]) }
    if ($Type -ceq 'int') { return ($Value -is [long]) }
    if ($Type -ceq 'bool') { return ($Value -is [bool]) }
    if ($Type -ceq 'string{}') {
        if (-not ($Value -is [System.Collections.Generic.Dictionary[string, object]])) { return $false }
        foreach ($entry in $Value.Values) { if (-not ($entry -is [string])) { return $false } }
        return $true
    }
    if ($Type -ceq 'string[]' -or $Type -ceq 'items') {
        if (-not ($Value -is [object[]])) { return $false }
        foreach ($entry in $Value) {
            if ($Type -ceq 'string[]' -and -not ($entry -is [string])) { return $false }
            if ($Type -ceq 'items' -and -not ($entry -is [System.Collections.Generic.Dictionary[string, object]])) { return $false }
        }
        return $true
    }
    throw (New-FarmsyncError 'protocol' ('unknown protocol type ' + $Type) $null)
}

function Get-FarmsyncMember {
    # A key of a decoded JSON object, or $null when it is missing.
    param($Object, [string]$Name)
    if ($Object.ContainsKey($Name)) { return , $Object[$Name] }
    return $null
}

function Assert-FarmsyncArguments {
    # Every argument of the generated table is present with its type: never a default.
    param($Arguments)
    foreach ($name in $FarmsyncArgumentTypes.Keys) {
        $type = $FarmsyncArgumentTypes[$name]
        $value = Get-FarmsyncMember -Object $Arguments -Name $name
        if (-not (Test-FarmsyncType -Value $value -Type $type)) {
            throw (New-FarmsyncError 'protocol' ("argument '" + $name + "' missing or not " + $type) $null)
        }
        if ($type -ceq 'items') {
            foreach ($item in $value) {
                foreach ($field in $FarmsyncItemTypes.Keys) {
                    $fieldType = $FarmsyncItemTypes[$field]
                    if (-not (Test-FarmsyncType -Value (Get-FarmsyncMember -Object $item -Name $field) -Type $fieldType)) {
                        throw (New-FarmsyncError 'protocol' ("argument 'items." + $field + "' missing or not " + $fieldType) $null)
                    }
                }
            }
        }
    }
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

function Test-FarmsyncWindows {
    return ($PSVersionTable.PSEdition -ne 'Core') -or $IsWindows
}

function Assert-FarmsyncUnique {
    # A path listed twice is refused, compared as the node's file system compares names:
    # case-insensitively on Windows (NTFS), after %VAR% expansion.
    param([string[]]$Paths)
    $comparer = [System.StringComparer]::Ordinal
    if (Test-FarmsyncWindows) { $comparer = [System.StringComparer]::OrdinalIgnoreCase }
    $seen = [System.Collections.Generic.HashSet[string]]::new($comparer)
    foreach ($path in $Paths) {
        if (-not $seen.Add((Resolve-FarmsyncPath -Path $path))) {
            throw (New-FarmsyncError 'protocol' 'the same path is listed twice' $path)
        }
    }
}

# --- files -------------------------------------------------------------------------------

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
    # The CryptoAPI implementation: FIPS-approved, where SHA256.Create() on .NET 4.5.2 and
    # older returns the managed one, which throws under the FIPS policy.
    param([byte[]]$Bytes)
    $sha = [System.Security.Cryptography.SHA256CryptoServiceProvider]::new()
    try {
        $hash = $sha.ComputeHash($Bytes)
    } finally {
        $sha.Dispose()
    }
    return ([System.BitConverter]::ToString($hash).Replace('-', '')).ToLowerInvariant()
}

function Assert-FarmsyncNotLink {
    # A replace would act on a symbolic link or junction, not on the file it points to.
    param([string]$Target, [string]$Shown)
    if ([System.IO.File]::Exists($Target) -or [System.IO.Directory]::Exists($Target)) {
        $attributes = [System.IO.File]::GetAttributes($Target)
        if ($attributes -band [System.IO.FileAttributes]::ReparsePoint) {
            throw (New-FarmsyncError 'protocol' 'is a symbolic link or junction; list the real file' $Shown)
        }
    }
}

function Open-FarmsyncRegularFile {
    # A read stream on a regular file of at most $FarmsyncMaxFileBytes; is-directory,
    # not-found, not-a-regular-file and too-large errors name $Shown. The caller disposes it.
    param([string]$Target, [string]$Shown)
    if ([System.IO.Directory]::Exists($Target)) {
        throw (New-FarmsyncError 'is-directory' 'is a directory' $Shown)
    }
    if (-not [System.IO.File]::Exists($Target)) {
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
    $buffer = [byte[]]::new($FarmsyncMaxFileBytes + 1)
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
    $bytes = [byte[]]::new($total)
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
            # A file's identity: volume serial number and file index from
            # GetFileInformationByHandle (kernel32; .NET 4.6 has no managed call for it), as
            # "<serial>:<index>" in lower-case hex, the same form as the twin's (st_dev, st_ino).
            # Fixed source, written here so Add-Type gets a constant; compiled once per process.
            Add-Type -TypeDefinition @'
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
    # Remove one of our own files if it is there; $true when something was removed. A
    # directory at one of our names is not ours: is-directory, as unlink(2) in the twin.
    param([string]$Path)
    if ([System.IO.Directory]::Exists($Path)) {
        throw (New-FarmsyncError 'is-directory' 'is a directory, not a farmsync file' $Path)
    }
    if ([System.IO.File]::Exists($Path)) {
        [System.IO.File]::Delete($Path)
        return $true
    }
    return $false
}

function Copy-FarmsyncAcl {
    # Give $To the access rules (DACL) of $From; on non-Windows PowerShell, the mode bits.
    param([string]$From, [string]$To)
    if (-not (Test-FarmsyncWindows)) {
        [System.IO.File]::SetUnixFileMode($To, [System.IO.File]::GetUnixFileMode($From))
        return
    }
    $sections = [System.Security.AccessControl.AccessControlSections]::Access
    if ($PSVersionTable.PSEdition -eq 'Core') {
        # .NET Core moved the ACL calls to extension methods.
        $source = [System.IO.FileSystemAclExtensions]::GetAccessControl([System.IO.FileInfo]::new($From), $sections)
        $acl = [System.IO.FileSystemAclExtensions]::GetAccessControl([System.IO.FileInfo]::new($To), $sections)
        $acl.SetSecurityDescriptorSddlForm($source.GetSecurityDescriptorSddlForm($sections), $sections)
        [System.IO.FileSystemAclExtensions]::SetAccessControl([System.IO.FileInfo]::new($To), $acl)
        return
    }
    $source = [System.IO.File]::GetAccessControl($From, $sections)
    $acl = [System.IO.File]::GetAccessControl($To, $sections)
    $acl.SetSecurityDescriptorSddlForm($source.GetSecurityDescriptorSddlForm($sections), $sections)
    [System.IO.File]::SetAccessControl($To, $acl)
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
        if ([System.IO.File]::Exists($Target)) {
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

# --- the ops' shared steps: stage, commit, cleanup, read (one copy each, PROTOCOL.md) -------

function ConvertFrom-FarmsyncBase64 {
    param([string]$Text)
    try {
        $bytes = [System.Convert]::FromBase64String($Text)
    } catch {
        throw (New-FarmsyncError 'protocol' 'content_b64 is not base64' $null)
    }
    return , $bytes
}

function Get-FarmsyncItemPaths {
    # The path of each item, in order.
    param([object[]]$Items)
    $paths = [System.Collections.Generic.List[string]]::new()
    foreach ($item in $Items) { $paths.Add($item.path) }
    return , $paths.ToArray()
}

function Assert-FarmsyncKeepBackups {
    # keep_backups as a number, refused below 0 (the type is checked against the table).
    param($Keep)
    $count = [long]$Keep
    if ($count -lt 0) { throw (New-FarmsyncError 'protocol' 'keep_backups must be >= 0' $null) }
    return $count
}

function Invoke-FarmsyncStageItems {
    # stage: every live hash is checked before anything is written; then each staging file is
    # created exclusively with the live file's DACL, written through and read back. All or
    # nothing: on any failure the staging files written so far are removed. A live file that
    # is a symbolic link or junction is refused, as the twin refuses symlinks.
    # Returns @{ Staged = item paths; Written = staging files }.
    param([object[]]$Items, [string]$RunId)
    Assert-FarmsyncUnique -Paths (Get-FarmsyncItemPaths -Items $Items)
    $plan = [System.Collections.Generic.List[object]]::new()
    foreach ($item in $Items) {
        $path = [string]$item.path
        $target = Resolve-FarmsyncPath -Path $path
        Assert-FarmsyncNotLink -Target $target -Shown $path
        $live = Read-FarmsyncBytes -Target $target -Shown $path
        if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $path)
        }
        $bytes = ConvertFrom-FarmsyncBase64 -Text $item.content_b64
        $plan.Add(@{ Path = $path; Target = $target; Bytes = $bytes })
    }
    $written = [System.Collections.Generic.List[string]]::new()
    $staged = [System.Collections.Generic.List[string]]::new()
    try {
        foreach ($step in $plan) {
            $staging = Get-FarmsyncStagingPath -Target $step.Target -RunId $RunId
            $written.Add($staging)
            Write-FarmsyncNewFile -Path $staging -Bytes $step.Bytes -LikePath $step.Target
            $back = Read-FarmsyncBytes -Target $staging -Shown $staging
            if ((Get-FarmsyncSha256 -Bytes $back) -ne (Get-FarmsyncSha256 -Bytes $step.Bytes)) {
                throw (New-FarmsyncError 'verify-mismatch' 'staging file read back differs' $staging)
            }
            $staged.Add($step.Path)
        }
    } catch {
        $failure = Get-FarmsyncErrorInfo -ErrorRecord $_
        foreach ($staging in $written) { $null = Remove-FarmsyncFile -Path $staging }
        if ($null -eq $failure.path) { $failure.path = $written[$written.Count - 1] }
        throw (New-FarmsyncError $failure.kind $failure.detail $failure.path)
    }
    return @{ Staged = $staged.ToArray(); Written = $written.ToArray() }
}

function Test-FarmsyncCommitReady {
    # commit's checks, at arm and again at release: staging files hold what was staged, live
    # files are still what was read, and no backup of the run exists yet.
    param([object[]]$Items, [string]$RunId)
    foreach ($item in $Items) {
        $path = [string]$item.path
        $target = Resolve-FarmsyncPath -Path $path
        Assert-FarmsyncNotLink -Target $target -Shown $path
        $staging = Get-FarmsyncStagingPath -Target $target -RunId $RunId
        if (-not [System.IO.File]::Exists($staging)) {
            throw (New-FarmsyncError 'not-found' 'staging file missing (stage first)' $staging)
        }
        $staged = Read-FarmsyncBytes -Target $staging -Shown $staging
        if ((Get-FarmsyncSha256 -Bytes $staged) -ne ([string]$item.staged_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'staging file changed since staged' $staging)
        }
        $live = Read-FarmsyncBytes -Target $target -Shown $path
        if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $path)
        }
        $backup = Get-FarmsyncBackupPath -Target $target -RunId $RunId
        if ([System.IO.File]::Exists($backup) -or [System.IO.Directory]::Exists($backup)) {
            throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
        }
    }
}

function Invoke-FarmsyncReplace {
    # Puts the staging file in place of the live one (ReplaceFile; the backup is ours,
    # made before), retried while another process holds the file (same loop as
    # replace_when_free in agent.py).
    param([string]$Staging, [string]$Target, [string]$Backup, [string]$RunId, [string]$Shown)
    $delay = $FarmsyncReplaceFirstDelayMs
    for ($attempt = 1; $attempt -le $FarmsyncReplaceAttempts; $attempt++) {
        try {
            # [NullString]: no backup from ReplaceFile itself (ours exists already).
            [System.IO.File]::Replace($Staging, $Target, [NullString]::Value)
            if ($attempt -gt 1) {
                Add-FarmsyncWarning -Text ($Shown + ': replaced after ' + ($attempt - 1) + ' retries (file in use)')
            }
            return
        } catch {
            $record = $_
            # Never leave the live path empty: put the original back from our backup.
            if (-not [System.IO.File]::Exists($Target)) {
                Restore-FarmsyncBackup -Backup $Backup -Target $Target -RunId $RunId
            }
            $code = Get-FarmsyncWin32Code -Exception (Get-FarmsyncInnerException -Exception $record.Exception)
            if ($FarmsyncBusyCodes -notcontains $code) { throw $record }
            if ($attempt -eq $FarmsyncReplaceAttempts) {
                throw (New-FarmsyncError 'remote-error' ('live file still in use by another process after ' + $attempt + ' attempts') $Shown)
            }
            [System.Threading.Thread]::Sleep($delay)
            $delay = $delay * 2
        }
    }
}

function Invoke-FarmsyncCommitItems {
    # commit's release, after the word: the checks again (they narrow the window between arm
    # and release), then per item an exclusive backup and the replace. If one item fails, the
    # items this call already replaced are restored from their backups before the error is
    # thrown. Returns the paths committed.
    param([object[]]$Items, [string]$RunId)
    Test-FarmsyncCommitReady -Items $Items -RunId $RunId
    $done = [System.Collections.Generic.List[object]]::new()
    $committed = [System.Collections.Generic.List[string]]::new()
    $current = $null
    try {
        foreach ($item in $Items) {
            $current = [string]$item.path
            $target = Resolve-FarmsyncPath -Path $current
            $staging = Get-FarmsyncStagingPath -Target $target -RunId $RunId
            $backup = Get-FarmsyncBackupPath -Target $target -RunId $RunId
            # The backup is a new file (CreateNew, write-through) holding the bytes just
            # checked: ReplaceFile would replace an existing backup, and one already there
            # means a second path reaches this file, so its original must stay.
            if ([System.IO.File]::Exists($backup) -or [System.IO.Directory]::Exists($backup)) {
                throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
            }
            $live = Read-FarmsyncBytes -Target $target -Shown $current
            if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
                throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $current)
            }
            Write-FarmsyncNewFile -Path $backup -Bytes $live -LikePath $target -Exclusive
            Invoke-FarmsyncReplace -Staging $staging -Target $target -Backup $backup -RunId $RunId -Shown $current
            $done.Add(@{ Target = $target; Backup = $backup })
            $committed.Add($current)
        }
    } catch {
        $failure = Get-FarmsyncErrorInfo -ErrorRecord $_
        for ($i = $done.Count - 1; $i -ge 0; $i--) {
            try {
                Restore-FarmsyncBackup -Backup $done[$i].Backup -Target $done[$i].Target -RunId $RunId
            } catch {
                [Console]::Error.WriteLine('farmsync: could not restore ' + $done[$i].Target)
            }
        }
        if ($null -eq $failure.path) { $failure.path = $current }
        throw (New-FarmsyncError $failure.kind $failure.detail $failure.path)
    }
    return , $committed.ToArray()
}

function Invoke-FarmsyncCleanupPaths {
    # cleanup: per path the run's staging and temp files, and every backup beyond the newest
    # $Keep by run id, never the backup of the run it is called for. Returns the files removed.
    param([string[]]$Paths, [string]$RunId, [long]$Keep)
    $removed = [System.Collections.Generic.List[string]]::new()
    foreach ($entry in $Paths) {
        $target = Resolve-FarmsyncPath -Path $entry
        $doomed = [System.Collections.Generic.List[string]]::new()
        $doomed.Add((Get-FarmsyncStagingPath -Target $target -RunId $RunId))
        $doomed.Add((Get-FarmsyncTempPath -Target $target -RunId $RunId))
        $backups = Get-FarmsyncBackups -Target $target
        for ($i = $Keep; $i -lt $backups.Count; $i++) {
            if ($backups[$i].RunId -cne $RunId) { $doomed.Add($backups[$i].Path) }
        }
        foreach ($victim in $doomed) {
            if (Remove-FarmsyncFile -Path $victim) { $removed.Add($victim) }
        }
    }
    return , $removed.ToArray()
}

function Read-FarmsyncState {
    # read's entry for one path: {path, status: ok, content_b64, sha256, mtime, file_id}; a
    # missing file is a status, not an error; so is an unreadable one (a directory, a device,
    # a file past 8 MiB): {path, status: error, error_kind, error}. file_id: volume serial
    # number and file index of the file read. -WithoutContent: the same entry without
    # content_b64 (stage_commit's verify).
    param([string]$Path, [switch]$WithoutContent)
    try {
        $target = Resolve-FarmsyncPath -Path $Path
        $stream = Open-FarmsyncRegularFile -Target $target -Shown $Path
        try {
            $bytes = Read-FarmsyncStream -Stream $stream -Shown $Path
            $fileId = Get-FarmsyncFileId -Stream $stream
        } finally {
            $stream.Dispose()
        }
        $written = [System.DateTimeOffset][System.IO.File]::GetLastWriteTimeUtc($target)
        $content = $null
        if (-not $WithoutContent) { $content = [System.Convert]::ToBase64String($bytes) }
        $state = @{
            path = $Path
            status = 'ok'
            content_b64 = $content
            sha256 = (Get-FarmsyncSha256 -Bytes $bytes)
            mtime = $written.ToUnixTimeMilliseconds() / 1000.0
            file_id = $fileId
        }
        if ($WithoutContent) { $state.Remove('content_b64') }
        return $state
    } catch {
        $info = Get-FarmsyncErrorInfo -ErrorRecord $_
        if ($info.kind -eq 'not-found') {
            return @{ path = $Path; status = 'missing' }
        }
        return @{ path = $Path; status = 'error'; error_kind = $info.kind; error = $info.detail }
    }
}

function Invoke-FarmsyncRequest {
    # Parse the request the bootstrap read ($farmsyncJson, its scope), check the arguments
    # against the generated table, run the op and write the final result line (flushed).
    # Returns 0 (ok), 1 (an error answered; the session goes on) or 2 (the request is not
    # JSON: a broken frame, answered; the bootstrap ends the session with status 1).
    try {
        $request = ConvertFrom-FarmsyncJsonText -Json $farmsyncJson
    } catch {
        Write-FarmsyncLine -Object @{ ok = $false; error = (Get-FarmsyncErrorInfo -ErrorRecord $_) }
        return 2
    }
    try {
        $arguments = $null
        if ($request -is [System.Collections.Generic.Dictionary[string, object]]) {
            $arguments = Get-FarmsyncMember -Object $request -Name 'args'
        }
        if (-not ($arguments -is [System.Collections.Generic.Dictionary[string, object]])) {
            throw (New-FarmsyncError 'protocol' 'unknown op or missing args' $null)
        }
        Assert-FarmsyncArguments -Arguments $arguments
        # Only the op's last output is its result (guards against stray pipeline output).
        $result = @(Invoke-FarmsyncOp -Arguments $arguments)[-1]
        if ($null -eq $result) { $result = @{} }
        if ($FarmsyncWarnings.Count -gt 0) { $result['warnings'] = $FarmsyncWarnings.ToArray() }
        Write-FarmsyncLine -Object @{ ok = $true; result = $result }
        return 0
    } catch {
        Write-FarmsyncLine -Object @{ ok = $false; error = (Get-FarmsyncErrorInfo -ErrorRecord $_) }
        return 1
    }
}
