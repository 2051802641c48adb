# rollback {run_id, paths} -> {restored, skipped}
# Puts each path's backup of the run back atomically; the backup stays. Paths without a
# backup (never committed) are skipped; their staging file is removed.
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $restored = [System.Collections.Generic.List[string]]::new()
    $skipped = [System.Collections.Generic.List[string]]::new()
    foreach ($entry in $Arguments.paths) {
        $path = [string]$entry
        $target = Resolve-FarmsyncPath -Path $path
        $backup = Get-FarmsyncBackupPath -Target $target -RunId $runId
        if ([System.IO.File]::Exists($backup)) {
            Restore-FarmsyncBackup -Backup $backup -Target $target -RunId $runId
            $restored.Add($path)
        } else {
            $skipped.Add($path)
        }
        $null = Remove-FarmsyncFile -Path (Get-FarmsyncStagingPath -Target $target -RunId $runId)
    }
    return @{ restored = $restored.ToArray(); skipped = $skipped.ToArray() }
}
