# farmsync node agent bootstrap: the only script on the command line (-EncodedCommand).
# It checks the floor (Windows PowerShell 5.1, .NET 4.6, FullLanguage) before reading anything,
# reads line 1 of stdin, a base64 JSON request {v, op, script, args}, with .NET calls only,
# loads the fixed op script it carries and runs it. No cmdlet ever receives request data:
# module logging (event 4103) records cmdlet parameters, and script block logging (4104)
# sees only this text and the fixed op scripts. The op script parses the rest of the request.
# This file keeps to PowerShell 2.0 syntax, so that an older shell still says what it is,
# and every failure names its stage, the exception type, the version and the language mode,
# never any text of the request.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$farmsyncKind = 'remote-error'
$farmsyncStage = 'check the shell'
$farmsyncWhy = ''
try {
    $farmsyncVersion = $PSVersionTable.PSVersion
    if ($farmsyncVersion.Major -lt 5 -or ($farmsyncVersion.Major -eq 5 -and $farmsyncVersion.Minor -lt 1)) {
        $farmsyncWhy = 'Windows PowerShell 5.1 or later is required'
        throw 'floor'
    }
    if ("$($ExecutionContext.SessionState.LanguageMode)" -ne 'FullLanguage') {
        $farmsyncWhy = 'the agent needs FullLanguage mode; an AppLocker or WDAC policy constrains this shell'
        throw 'floor'
    }
    # Environment.Version reports 4.0.30319.42000 from .NET Framework 4.6 on.
    if ($PSVersionTable.PSEdition -eq 'Desktop' -and [Environment]::Version.Revision -lt 42000) {
        $farmsyncWhy = '.NET Framework 4.6 or later is required (CLR ' + "$([Environment]::Version)" + ')'
        throw 'floor'
    }
    $farmsyncKind = 'protocol'
    $farmsyncStage = 'read the request'
    $farmsyncLine = [Console]::In.ReadLine()
    $farmsyncStage = 'decode the request'
    $farmsyncJson = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($farmsyncLine))
    if (-not [regex]::IsMatch($farmsyncJson, '^\{"v":1,')) {
        $farmsyncWhy = 'unsupported protocol version'
        throw 'version'
    }
    $farmsyncScript = [regex]::Match($farmsyncJson, '"script":"([^"\\]*(?:\\.[^"\\]*)*)"')
    if (-not $farmsyncScript.Success) {
        $farmsyncWhy = 'no op script in the request'
        throw 'script'
    }
    $farmsyncStage = 'load the op script'
    $farmsyncBlock = [ScriptBlock]::Create([regex]::Unescape($farmsyncScript.Groups[1].Value))
} catch {
    $farmsyncDetail = 'agent bootstrap failed at ' + $farmsyncStage + ': '
    if ($farmsyncWhy -ne '') { $farmsyncDetail += $farmsyncWhy } else { $farmsyncDetail += $_.Exception.GetType().FullName }
    $farmsyncDetail += ' (PowerShell ' + "$($PSVersionTable.PSVersion)" + ', ' + "$($ExecutionContext.SessionState.LanguageMode)" + ')'
    # Plain output, not [Console]: it must work in ConstrainedLanguage mode too.
    '{"ok":false,"error":{"kind":"' + $farmsyncKind + '","detail":"' + ($farmsyncDetail -replace '[^A-Za-z0-9 .,:;()_-]', '') + '","path":null}}'
    exit 1
}
. $farmsyncBlock
exit (Invoke-FarmsyncRequest)
