# cleanup {run_id, paths, keep_backups} -> {removed}
# Removes the run's staging and temp files, and per path every backup beyond the newest
# keep_backups by run id (like the IIS configuration history, 10 by default on the
# controller), never the backup of the run in progress.
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $keep = [int]$Arguments.keep_backups
    if ($keep -lt 0) { throw (New-FarmsyncError 'protocol' 'keep_backups must be >= 0' $null) }
    $removed = [System.Collections.Generic.List[string]]::new()
    foreach ($entry in @($Arguments.paths)) {
        $target = Resolve-FarmsyncPath -Path ([string]$entry)
        $doomed = [System.Collections.Generic.List[string]]::new()
        $doomed.Add((Get-FarmsyncStagingPath -Target $target -RunId $runId))
        $doomed.Add((Get-FarmsyncTempPath -Target $target -RunId $runId))
        $backups = Get-FarmsyncBackups -Target $target
        for ($i = $keep; $i -lt $backups.Count; $i++) {
            if ($backups[$i].RunId -cne $runId) { $doomed.Add($backups[$i].Path) }
        }
        foreach ($victim in $doomed) {
            if (Remove-FarmsyncFile -Path $victim) { $removed.Add($victim) }
        }
    }
    return @{ removed = $removed.ToArray() }
}
