# read {paths} -> {files: [{path, status, content_b64?, sha256?, mtime?, error_kind?, error?}]}
# A missing file is a status, not an error; so is an unreadable one.
$ErrorActionPreference = 'Stop'

function Read-FarmsyncState {
    param([string]$Path)
    try {
        $target = Resolve-FarmsyncPath -Path $Path
        $bytes = Read-FarmsyncBytes -Target $target -Shown $Path
        $written = [System.DateTimeOffset][System.IO.File]::GetLastWriteTimeUtc($target)
        return @{
            path = $Path
            status = 'ok'
            content_b64 = [System.Convert]::ToBase64String($bytes)
            sha256 = (Get-FarmsyncSha256 -Bytes $bytes)
            mtime = $written.ToUnixTimeMilliseconds() / 1000.0
        }
    } catch {
        $info = Get-FarmsyncErrorInfo -ErrorRecord $_
        if ($info.kind -eq 'not-found') {
            return @{ path = $Path; status = 'missing' }
        }
        return @{ path = $Path; status = 'error'; error_kind = $info.kind; error = $info.detail }
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $files = [System.Collections.Generic.List[object]]::new()
    foreach ($path in $Arguments.paths) {
        $files.Add((Read-FarmsyncState -Path $path))
    }
    return @{ files = $files.ToArray() }
}
