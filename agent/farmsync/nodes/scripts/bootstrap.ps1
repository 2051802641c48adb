# farmsync node agent bootstrap: the only script on the command line (-EncodedCommand).
# It checks the floor (Windows PowerShell 5.1, .NET 4.6, FullLanguage) once, before reading
# anything, then serves a session (PROTOCOL.md, "Sessions"): it reads one request line after
# another from stdin, each a base64 JSON request {v, op, script, args}, with .NET calls only,
# and runs the fixed op script the request carries, until end of input. No cmdlet ever
# receives request data: module logging (event 4103) records cmdlet parameters, and script
# block logging (4104) sees only this text and the fixed op scripts. The op script parses the
# rest of the request and writes its answer (flushed) before the next line is read.
# This file keeps to PowerShell 2.0 syntax, so that an older shell still says what it is,
# and every failure names its stage, the exception type, the version and the language mode,
# never any text of the request. A broken frame (not base64, another protocol version, no
# script) is answered and ends the session: where the next request starts is unknown.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$farmsyncKind = 'remote-error'
$farmsyncStage = 'check the shell'
$farmsyncWhy = ''
# The exit status: that of the last answer, 0 when none was asked for.
$farmsyncExit = 0
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
    $farmsyncStage = 'start the session'
    # Compiled op scripts, by their exact text: a second request of an op is not compiled
    # again. Dictionary's default comparer for string keys is ordinal (String.Equals); a
    # PowerShell @{} would compare the keys case-insensitively.
    $farmsyncBlocks = New-Object -TypeName 'System.Collections.Generic.Dictionary[System.String,System.Management.Automation.ScriptBlock]'
    while ($true) {
        $farmsyncKind = 'protocol'
        $farmsyncStage = 'read the request'
        # Every read of stdin, here and for a release word, goes through this one reader.
        $farmsyncLine = [Console]::In.ReadLine()
        # End of input where a request would start: the session is over.
        if ($null -eq $farmsyncLine) { break }
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
        $farmsyncText = [regex]::Unescape($farmsyncScript.Groups[1].Value)
        if (-not $farmsyncBlocks.ContainsKey($farmsyncText)) {
            $farmsyncBlocks.Add($farmsyncText, [ScriptBlock]::Create($farmsyncText))
        }
        $farmsyncBlock = $farmsyncBlocks[$farmsyncText]
        $farmsyncKind = 'remote-error'
        $farmsyncStage = 'run the op script'
        # A scope of its own (the call operator): what one op defines is gone for the next,
        # and its warnings belong to its answer. Invoke-FarmsyncRequest (common.ps1) reads
        # $farmsyncJson from this scope, answers, and returns 0 (ok), 1 (an error; the session
        # goes on) or 2 (the request is not JSON: a broken frame, answered, status 1).
        $farmsyncLast = @(& { . $farmsyncBlock; Invoke-FarmsyncRequest })[-1]
        $farmsyncExit = 1
        if ($farmsyncLast -eq 0) { $farmsyncExit = 0 }
        if ($farmsyncLast -eq 2) { break }
    }
} catch {
    $farmsyncDetail = 'agent bootstrap failed at ' + $farmsyncStage + ': '
    if ($farmsyncWhy -ne '') { $farmsyncDetail += $farmsyncWhy } else { $farmsyncDetail += $_.Exception.GetType().FullName }
    $farmsyncDetail += ' (PowerShell ' + "$($PSVersionTable.PSVersion)" + ', ' + "$($ExecutionContext.SessionState.LanguageMode)" + ')'
    # Plain output, not [Console]: it must work in ConstrainedLanguage mode too.
    '{"ok":false,"error":{"kind":"' + $farmsyncKind + '","detail":"' + ($farmsyncDetail -replace '[^A-Za-z0-9 .,:;()_-]', '') + '","path":null}}'
    $farmsyncExit = 1
}
exit $farmsyncExit
