#!/usr/bin/env python3
"""STEP3: shot boundary detection with TransNetV2.

    transnet_env/bin/python workflow_scripts/step3/run_transnet.py [--input-dir DIR] [options]

Finds the videos of a projects folder (or takes one file), predicts per-frame
transition probabilities with the official TransNetV2 weights and writes, next
to each video, ``<stem>.csv`` (the scenes) and ``<stem>.scenes.json`` (metadata
and probabilities). Prints the progress lines of docs/progress-protocol.md.

Exit codes: 0 every video succeeded or was already done, 1 some failed,
2 usage, configuration or weights error. ``--help`` lists the options.
"""
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots.malloc_arenas import limit_arenas  # noqa: E402
from shots.report import Reporter  # noqa: E402
from shots.config import ConfigError, load_config  # noqa: E402


def _terminate(signum, _frame):
    # The dashboard cancels with SIGTERM: leave through the normal unwinding so
    # temporary files are removed; ffmpeg children share our process group.
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    limit_arenas()  # before any thread starts: memory stays flat on long videos
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    signal.signal(signal.SIGTERM, _terminate)
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"ERROR: config: {exc}", flush=True)
        return 2

    from shots import driver  # after the config is valid: a usage error costs no imports

    from shots.folder_lock import FolderBusy, FolderLock

    reporter = Reporter() if config.dry_run else Reporter.with_log(Path(config.log_dir))
    lock = FolderLock(Path(config.input_dir))
    try:
        if not config.dry_run:  # a dry run writes nothing: it may look while a run works
            lock.acquire()
        return driver.run(config, reporter)
    except FolderBusy as exc:
        reporter.error(str(exc))
        return 2
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the details on stderr
        import traceback
        traceback.print_exc()
        reporter.error(f"internal error, run stopped: {type(exc).__name__}: {exc}")
        return 1
    finally:
        lock.release()
        reporter.close()


if __name__ == "__main__":
    sys.exit(main())
