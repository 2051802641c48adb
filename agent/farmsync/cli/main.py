"""The ``farmsync`` command line: parsing, output mode and exit codes. No farm logic lives here."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from farmsync import __version__
from farmsync.cli.output import SETTINGS, colour_wanted, output_options, print_json
from farmsync.cli.printable import printable
from farmsync.errors import ExitCode, FarmsyncError, InputError, describe_error
from farmsync.orchestration.options import RolloutOptions

if TYPE_CHECKING:
    # Imported where used: `--help` and `--version` load no console, table, progress bar,
    # vault or rollout (tests/cli/test_startup.py).
    from rich.console import Console

    from farmsync.orchestration.events import Reporter
    from farmsync.orchestration.result import RunResult

INVENTORY_ENV = "FARMSYNC_INVENTORY"
DEFAULTS = RolloutOptions()  # the one place the run options' defaults are defined


class FarmsyncGroup(click.Group):
    """Turns farmsync's errors into one message on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmsyncError as exc:
            click.echo(f"farmsync: error: {printable(exc)}", err=True)
            for line in exc.details:
                click.echo(f"farmsync:   {printable(line)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Outside a rollout (start-up, reading, a second Ctrl-C): no traceback, exit 130.
            click.echo(
                "farmsync: interrupted; if a run was under way, `farmsync recover` settles it",
                err=True,
            )
            ctx.exit(ExitCode.INTERRUPTED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            # A bug or an unforeseen failure (a full disk under the journal, say). Its text
            # and traceback could quote file contents: name its type and place only.
            click.echo(
                f"farmsync: internal error: {describe_error(exc)}; if a run was under way, "
                "`farmsync recover` settles it",
                err=True,
            )
            ctx.exit(ExitCode.NODE_FAILURE)


class PrintableFormatter(logging.Formatter):
    """Log lines quote host names and node text: show their control characters as escapes."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return printable(self.inner.format(record))


def stdout_console() -> Console:
    from rich.console import Console

    no_color = not colour_wanted()
    console = Console(highlight=False, soft_wrap=True, no_color=no_color)
    if not console.is_terminal:
        # A log or a pipe has no width: never cut host names, paths or fingerprints.
        console = Console(highlight=False, soft_wrap=True, width=400, no_color=no_color)
    return console


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, no_color=not colour_wanted())


@contextmanager
def reporter_for(as_json: bool) -> Iterator[Reporter]:
    """Rich progress on a terminal, one timestamped line per event elsewhere, nothing with
    --json or -q."""
    from farmsync.cli.reporters import PlainReporter, QuietReporter, RichReporter

    if as_json or SETTINGS.verbosity < 0:
        yield QuietReporter()
        return
    console = stderr_console()
    if console.is_terminal:
        with RichReporter(console) as rich_reporter:
            yield rich_reporter
    else:
        yield PlainReporter(timestamps=True)


def _one_inventory(ctx: click.Context, param: click.Parameter, value: tuple[Path, ...]) -> Path:
    """Several -i are refused: one inventory is one farm, and Ansible's merge of several
    files (later wins) would silently decide which hosts and keys a farm has."""
    if not value:
        raise click.MissingParameter(ctx=ctx, param=param)
    if len(value) > 1:
        raise InputError(
            "one inventory per run: "
            + ", ".join(str(v) for v in value)
            + " were given; farmsync does not merge inventories (one file is one farm): "
            "put the hosts in one file, or run once per farm",
            source="-i",
        )
    return value[0]


def inventory_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        envvar=INVENTORY_ENV,
        multiple=True,
        callback=_one_inventory,
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Ansible-style YAML inventory, one (or ${INVENTORY_ENV}).",
    )(f)


@dataclass(frozen=True)
class RunArgs:
    """The options every farm-changing command shares, collected by ``run_options``."""

    inventory_path: Path
    limit: str | None
    forks: int
    check: bool
    diff: bool
    as_json: bool
    timeout: float
    no_recycle: bool
    keep_backups: int
    state_dir: Path | None
    vault_key_file: Path | None
    wait: float = 0.0
    clear_staged: tuple[str, ...] = ()

    def options(self) -> RolloutOptions:
        return RolloutOptions(
            forks=self.forks,
            check=self.check,
            diff=self.diff,
            timeout=self.timeout,
            recycle=not self.no_recycle,
            keep_backups=self.keep_backups,
            clear_staged=self.clear_staged,
        )


state_dir_option = click.option(
    "--state-dir",
    envvar="FARMSYNC_STATE_DIR",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Where vault, journal and lock live (or $FARMSYNC_STATE_DIR; default "
        "$XDG_STATE_HOME/farmsync, else ~/.local/state/farmsync)."
    ),
)
# Every environment variable a farm command reads, for the end of its --help.
ENVIRONMENT_EPILOG = (
    "\b\nEnvironment:\n"
    "  FARMSYNC_INVENTORY         the inventory when -i is not given\n"
    "  FARMSYNC_STATE_DIR         the state directory (default $XDG_STATE_HOME/farmsync,\n"
    "                             else ~/.local/state/farmsync)\n"
    "  FARMSYNC_VAULT_PASSPHRASE  the vault passphrase\n"
    "  FARMSYNC_VAULT_KEY_FILE    a vault key file instead (0600)\n"
    "  NO_COLOR                   no colour in the output\n"
    "  and the variables the inventory names (farmsync_password_env)"
)
vault_key_file_option = click.option(
    "--vault-key-file",
    envvar="FARMSYNC_VAULT_KEY_FILE",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Vault key file instead of $FARMSYNC_VAULT_PASSPHRASE.",
)


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared options; the command receives them as one ``RunArgs``."""

    @functools.wraps(f)
    def command(**params: Any) -> Any:
        run = RunArgs(**{name: params.pop(name) for name in RunArgs.__dataclass_fields__})
        return f(run, **params)

    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("-l", "--limit", default=None, help="Ansible host pattern selecting hosts."),
        click.option(
            "-f",
            "--forks",
            default=DEFAULTS.forks,
            show_default=True,
            type=click.IntRange(1, 10000),
            help="How many nodes to work on at once.",
        ),
        click.option("-C", "--check", is_flag=True, help="Read and plan only; change nothing."),
        click.option("-D", "--diff", is_flag=True, help="Show changed lines, keys masked."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout."),
        click.option(
            "--timeout",
            default=DEFAULTS.timeout,
            show_default=True,
            type=click.FloatRange(1, 3600),
            help="Seconds to wait for one node's commit.",
        ),
        click.option("--no-recycle", is_flag=True, help="Do not recycle after a change."),
        click.option(
            "--keep-backups",
            default=DEFAULTS.keep_backups,
            show_default=True,
            type=click.IntRange(1, 1000),
            help="Backups kept per file on each node.",
        ),
        click.option(
            "--clear-staged",
            multiple=True,
            metavar="RUN",
            help="Remove the staging files another (dead) controller's run RUN left on the nodes.",
        ),
        click.option(
            "--wait",
            default=0.0,
            metavar="SECONDS",
            type=click.FloatRange(0, 86400),
            help="Wait this long for a farm lock another run holds (default: refuse at once).",
        ),
        state_dir_option,
        vault_key_file_option,
        inventory_option,
        output_options,
    ]
    wrapped: Callable[..., Any] = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


@click.group(cls=FarmsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="farmsync")
@output_options
def cli() -> None:
    """Keep the ASP.NET <machineKey> identical on every node of an IIS web farm."""


# --- keygen ---------------------------------------------------------------------------------
@cli.command()
@click.option("--validation", default="HMACSHA256", show_default=True)
@click.option("--decryption", default="AES", show_default=True)
@click.option(
    "--compatibility-mode",
    default=None,
    type=click.Choice(["Framework20SP1", "Framework20SP2", "Framework45"]),
)
@click.option(
    "--format",
    "fmt",
    default="xml",
    show_default=True,
    type=click.Choice(["xml", "json", "appcmd", "powershell"]),
)
@click.option("--force", is_flag=True, help="Allow weak algorithms (MD5, DES) for a new key.")
def keygen(
    validation: str, decryption: str, compatibility_mode: str | None, fmt: str, force: bool
) -> None:
    """Print a new random machineKey (key material: with `history --show-keys`, the only
    output that holds keys)."""
    from farmsync.inventory.model import Policy
    from farmsync.keys.formats import render_key
    from farmsync.keys.generate import generate_key

    policy = Policy(
        validation=validation, decryption=decryption, compatibility_mode=compatibility_mode
    )
    try:
        key = generate_key(policy, force=force)
    except InputError as exc:  # the policy here is made of this command's own options
        raise InputError(exc.message, source="keygen options") from None
    click.echo(render_key(key, fmt))  # type: ignore[arg-type]


# --- inventory ------------------------------------------------------------------------------
@cli.group()
def inventory() -> None:
    """Inspect an inventory."""


@inventory.command("check")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def inventory_check(inventory_path: Path, as_json: bool) -> None:
    """Validate an inventory and show every host and the files farmsync manages there."""
    from farmsync.cli.inventory_view import show_inventory

    show_inventory(inventory_path, as_json, stdout_console(), stderr_console())


# --- farm commands --------------------------------------------------------------------------
def _run_farm(
    run: RunArgs,
    call: Callable[[Any], RunResult],
    *,
    limit: str | None = None,
    prompt: bool = True,
) -> None:
    from farmsync.cli.context import build_context
    from farmsync.cli.reporters import QuietReporter
    from farmsync.cli.secret import prompt_secret, vault_secret_source, will_prompt
    from farmsync.orchestration.farm import Farm

    ctx = build_context(
        run.inventory_path,
        limit if limit is not None else run.limit,
        run.options(),
        run.state_dir,
        run.vault_key_file,
        QuietReporter(),
    )
    ctx.lock_wait = run.wait
    if not prompt:  # a command that does not need the vault never asks for its secret
        ctx.vault_secret = vault_secret_source(run.vault_key_file, prompt=False)
    elif will_prompt(run.vault_key_file) and ctx.state.vault.exists():
        ctx.vault_secret()  # ask now, before progress bars take the terminal; kept for the run
    elif will_prompt(run.vault_key_file) and not run.check:
        # This run may create the vault: a typo here would seal it for good, so ask twice.
        typed = prompt_secret("New vault passphrase", confirm=True)
        ctx.vault_secret = lambda: typed
    with reporter_for(run.as_json) as reporter:
        ctx.reporter = reporter
        result = call(Farm(ctx))
    if run.as_json:
        print_json(result.to_dict(), sys.stdout)
    else:
        from farmsync.cli.render import render_run  # rich's table, once the run is over

        # Messages once: with the result when all went well, else on stderr only.
        render_run(
            result,
            stdout_console(),
            messages=result.exit_code == 0 and SETTINGS.verbosity >= 0,
            table=SETTINGS.verbosity >= 0,
            timings=SETTINGS.verbosity > 0,
        )
        if result.exit_code != 0:
            # The why, also where scripts look for it.
            for message in result.messages:
                click.echo(f"farmsync: {printable(message)}", err=True)
    sys.exit(result.exit_code)


@cli.command(epilog=ENVIRONMENT_EPILOG)
@run_options
@click.option(
    "--if-older-than",
    default=None,
    metavar="AGE",
    help="Only rotate when the current key is older than AGE (e.g. 90d).",
)
@click.option(
    "--if-due",
    is_flag=True,
    help="Only rotate when the current key is older than the policy's max_key_age.",
)
@click.option("--force", is_flag=True, help="Allow weak algorithms (MD5, DES) in the policy.")
@click.option(
    "--adopt",
    is_flag=True,
    help="Take over a farm whose key another vault wrote (rotates to a fresh key).",
)
def rotate(run: RunArgs, if_older_than: str | None, if_due: bool, force: bool, adopt: bool) -> None:
    """Generate a new key and put it on every node, two-phase."""
    from farmsync.inventory.durations import parse_duration

    age = parse_duration(if_older_than, source="--if-older-than") if if_older_than else None
    _run_farm(
        run,
        lambda farm: farm.rotate(if_older_than=age, if_due=if_due, force=force, adopt=adopt),
    )


@cli.command(epilog=ENVIRONMENT_EPILOG)
@run_options
def sync(run: RunArgs) -> None:
    """Put the vault's current key on nodes that lack it, without rotating."""
    _run_farm(run, lambda farm: farm.sync())


@cli.command(epilog=ENVIRONMENT_EPILOG)
@run_options
def rollback(run: RunArgs) -> None:
    """Go back to the previous key in the vault, two-phase."""
    _run_farm(run, lambda farm: farm.rollback())


@cli.command(epilog=ENVIRONMENT_EPILOG)
@run_options
@click.option(
    "--accept-current",
    "accept_current",
    multiple=True,
    metavar="HOST",
    help="Take HOST's files as they are now as the unfinished run's outcome (repeatable).",
)
def recover(run: RunArgs, accept_current: tuple[str, ...]) -> None:
    """Finish or roll back an interrupted run; exit 0 when no run is left half done."""
    _run_farm(run, lambda farm: farm.recover(accept_current))


@cli.command(epilog=ENVIRONMENT_EPILOG)
@inventory_option
@click.option("--host", "host_name", required=True, help="The host to restore.")
@click.option("--run", "run_id", required=True, help="The run whose backup to put back.")
@click.option("-C", "--check", is_flag=True, help="Show what would be restored; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.option("--no-recycle", is_flag=True, help="Do not recycle the node afterwards.")
@state_dir_option
def restore(
    inventory_path: Path,
    host_name: str,
    run_id: str,
    check: bool,
    as_json: bool,
    no_recycle: bool,
    state_dir: Path | None,
) -> None:
    """Put one node's backups from a given run back (that node only)."""
    run = RunArgs(
        inventory_path=inventory_path,
        limit=None,
        forks=1,
        check=check,
        diff=False,
        as_json=as_json,
        timeout=DEFAULTS.timeout,
        no_recycle=no_recycle,
        keep_backups=DEFAULTS.keep_backups,
        state_dir=state_dir,
        vault_key_file=None,
        wait=0.0,
    )
    # No --limit: the host is checked against the inventory by restore, under --host's name.
    _run_farm(run, lambda farm: farm.restore(host_name, run_id), prompt=False)


@cli.command(epilog=ENVIRONMENT_EPILOG)
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@state_dir_option
@vault_key_file_option
@click.option(
    "--show-keys",
    is_flag=True,
    help="Also print the key material itself (for disaster recovery; keep it secret).",
)
@click.option("--live", is_flag=True, help="Read the nodes for which key each holds now.")
def history(
    inventory_path: Path,
    as_json: bool,
    state_dir: Path | None,
    vault_key_file: Path | None,
    show_keys: bool,
    live: bool,
) -> None:
    """The vault's keys (status, origin, creation, the run that set them) and which nodes
    hold each: from the journal's verified runs, or read now with --live."""
    from farmsync.cli.history_view import show_history

    show_history(
        inventory_path,
        state_dir,
        vault_key_file,
        as_json,
        stdout_console(),
        show_keys=show_keys,
        err=stderr_console(),
        live=live,
    )


# --- vault ----------------------------------------------------------------------------------
@cli.group()
def vault() -> None:
    """The farm's key vault."""


@vault.command("rekey", epilog=ENVIRONMENT_EPILOG)
@inventory_option
@state_dir_option
@vault_key_file_option
@click.option(
    "--new-key-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seal the vault with this key file (0600) from now on.",
)
@click.option(
    "--new-passphrase-env",
    default=None,
    metavar="NAME",
    help="Seal the vault with the passphrase in environment variable NAME.",
)
def vault_rekey(
    inventory_path: Path,
    state_dir: Path | None,
    vault_key_file: Path | None,
    new_key_file: Path | None,
    new_passphrase_env: str | None,
) -> None:
    """Change the vault's passphrase or key file (asks for the new passphrase, twice, on a
    terminal when neither --new-key-file nor --new-passphrase-env is given)."""
    from farmsync.cli.vault_view import rekey

    out = stdout_console()
    rekey(inventory_path, state_dir, vault_key_file, new_key_file, new_passphrase_env, out)


# --- lab ------------------------------------------------------------------------------------
lab_dir_option = click.option(
    "--dir",
    "lab_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "The lab's state directory (processes, node files, keys). Default: ./.lab for up; "
        "for status and down, the lab `lab up` last started, from any directory."
    ),
)


@cli.group()
def lab() -> None:
    """A local farm of real sshd + Mono ASP.NET nodes on loopback."""


@lab.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 32))
@click.option(
    "--inventory-out",
    default="inventory/lab.yml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the lab's inventory.",
)
@lab_dir_option
def lab_up(nodes: int, inventory_out: Path, lab_dir: Path | None) -> None:
    """Start N lab nodes, each on its own key, and write their inventory."""
    from farmsync.cli.lab_view import lab_up as run

    run(nodes, inventory_out, lab_dir, stdout_console())


@lab.command("down")
@lab_dir_option
def lab_down(lab_dir: Path | None) -> None:
    """Stop every process the lab started."""
    from farmsync.cli.lab_view import lab_down as run

    run(lab_dir, stdout_console())


@lab.command("status")
@lab_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def lab_status(lab_dir: Path | None, as_json: bool) -> None:
    """Show the lab's nodes and whether they are up."""
    from farmsync.cli.lab_view import lab_status as run

    run(lab_dir, as_json, stdout_console())


# --- audit (cli/audit_cmd.py) ---------------------------------------------------------------
from farmsync.cli.audit_cmd import audit_command  # noqa: E402  (uses the options above)

cli.add_command(audit_command(inventory_option, state_dir_option, reporter_for, stdout_console))

# --- doctor (its own module) -------------------------------------------------------------
from farmsync.cli import doctor_cmd  # noqa: E402 - registered once the shared options exist

doctor_cmd.register(cli, inventory_option)


def main() -> None:
    # Warnings from farmsync (insecure settings) reach stderr; paramiko's transport thread
    # logs tracebacks for connections farmsync already reports as node errors.
    logging.basicConfig(level=logging.WARNING, format="farmsync: %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(PrintableFormatter(handler.formatter))
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    from farmsync.orchestration import interrupt

    interrupt.install()
    try:
        code = cli(prog_name="farmsync", standalone_mode=False)
    except click.UsageError as exc:
        # One line, as every other error: what is wrong and where to read more.
        where = exc.ctx.command_path if exc.ctx is not None else "farmsync"
        message = printable(exc.format_message())  # it may quote what was typed
        click.echo(f"farmsync: error: {message} (see `{where} --help`)", err=True)
        sys.exit(ExitCode.BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"farmsync: error: {printable(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):  # before click took over
        print("farmsync: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
