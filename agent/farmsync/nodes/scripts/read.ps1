# read {paths} -> {files: [{path, status, content_b64?, sha256?, mtime?, file_id?, error_kind?,
# error?}], machine_id}
# A missing file is a status, not an error; so is an unreadable one (a directory, a device,
# a file past 8 MiB). file_id: volume serial number and file index of the file read
# (Read-FarmsyncState, common.ps1).
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $files = [System.Collections.Generic.List[object]]::new()
    foreach ($path in $Arguments.paths) {
        $files.Add((Read-FarmsyncState -Path $path))
    }
    return @{ files = $files.ToArray(); machine_id = (Get-FarmsyncMachineId) }
}
