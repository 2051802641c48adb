# rollback {run_id, paths, expected?} -> {restored, skipped}
# First the fence: the run's staging file is removed, so a commit released earlier and never
# acknowledged finds nothing to put in place. Then each path's backup of the run is put back
# atomically (the backup stays). Paths without a backup (never committed) are skipped. With
# expected {path: sha256 of the original}: a live file already holding it is skipped, and a
# backup that does not hold it is never restored (verify-mismatch, both files left as they are).
$ErrorActionPreference = 'Stop'

function Get-FarmsyncHashOrNull {
    param([string]$Target, [string]$Shown)
    if (-not (Test-Path -LiteralPath $Target)) { return $null }
    return (Get-FarmsyncSha256 -Bytes (Read-FarmsyncBytes -Target $Target -Shown $Shown))
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $expected = $Arguments.expected
    $restored = [System.Collections.Generic.List[string]]::new()
    $skipped = [System.Collections.Generic.List[string]]::new()
    foreach ($entry in @($Arguments.paths)) {
        $path = [string]$entry
        $target = Resolve-FarmsyncPath -Path $path
        $null = Remove-FarmsyncFile -Path (Get-FarmsyncStagingPath -Target $target -RunId $runId)
        $want = $null
        if ($null -ne $expected -and $null -ne $expected.PSObject.Properties[$path]) {
            $want = ([string]$expected.PSObject.Properties[$path].Value).ToLowerInvariant()
        }
        if ($null -ne $want -and (Get-FarmsyncHashOrNull -Target $target -Shown $path) -eq $want) {
            $skipped.Add($path)
            continue
        }
        $backup = Get-FarmsyncBackupPath -Target $target -RunId $runId
        if (-not (Test-Path -LiteralPath $backup -PathType Leaf)) {
            $skipped.Add($path)
            continue
        }
        if ($null -ne $want -and (Get-FarmsyncHashOrNull -Target $backup -Shown $backup) -ne $want) {
            throw (New-FarmsyncError 'verify-mismatch' 'neither the live file nor this run''s backup holds the original; both left as they are' $path)
        }
        Restore-FarmsyncBackup -Backup $backup -Target $target -RunId $runId
        $restored.Add($path)
    }
    return @{ restored = $restored.ToArray(); skipped = $skipped.ToArray() }
}
