# list_backups {paths} -> {backups: {path: [run_id.. newest first, by run id]}}
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $backups = @{}
    foreach ($entry in @($Arguments.paths)) {
        $path = [string]$entry
        $runIds = [System.Collections.Generic.List[string]]::new()
        foreach ($backup in (Get-FarmsyncBackups -Target (Resolve-FarmsyncPath -Path $path))) {
            $runIds.Add($backup.RunId)
        }
        $backups[$path] = $runIds.ToArray()
    }
    return @{ backups = $backups }
}
