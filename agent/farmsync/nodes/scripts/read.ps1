# read {paths} -> {files: [{path, status, content_b64?, sha256?, mtime?, file_id?, error_kind?,
# error?}], machine_id}
# A missing file is a status, not an error; so is an unreadable one (a directory, a device,
# a file past 8 MiB). file_id: volume serial number and file index of the file read.
$ErrorActionPreference = 'Stop'

function Read-FarmsyncState {
    param([string]$Path)
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
        return @{
            path = $Path
            status = 'ok'
            content_b64 = [System.Convert]::ToBase64String($bytes)
            sha256 = (Get-FarmsyncSha256 -Bytes $bytes)
            mtime = $written.ToUnixTimeMilliseconds() / 1000.0
            file_id = $fileId
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
    foreach ($path in @($Arguments.paths)) {
        $files.Add((Read-FarmsyncState -Path ([string]$path)))
    }
    return @{ files = $files.ToArray(); machine_id = (Get-FarmsyncMachineId) }
}
