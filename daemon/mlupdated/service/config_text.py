"""The commented ``config.toml`` that ``mlupdated init`` writes (every key, with its
default); the repository's ``config/config.toml`` is the same text (a test checks).
Both live here, apart from the parser, so that finding a workspace imports no TOML."""

CONFIG_NAME = "config.toml"

DEFAULT_CONFIG_TEXT = """\
# mlupdated workspace configuration.
# Every key is shown with its default; delete or comment out a line to use the default.
# Keys that are commented out have no default value of their own ("use the model's").
# Reload a running daemon with SIGHUP (systemctl --user reload mlupdated).

[update]
# Pending corrections needed before an update is considered.
min_batch = 10
# ... and then no new drop for this many seconds (the user has finished a batch).
quiet_seconds = 30
# ... or, if drops keep coming, update anyway once the oldest pending one is this old.
max_wait_seconds = 3600
# "incremental": train the new corrections on the current model (Core ML's behaviour);
# "replay": add a sample of earlier corrections, so that older lessons are not forgotten.
policy = "incremental"
# How many earlier corrections "replay" adds to each update.
replay_sample = 50
# Train on the model's rehearsal set (general examples it carries, if any) beside the
# corrections, each correction weighted as the model says: the model learns the
# corrected animal and keeps what it knew about the others.
rehearsal = true
# Also update on a schedule (crontab syntax: minute hour day month weekday), if set.
# cron = "0 3 * * *"
# Training parameters; unset means "as stored in the model". They must lie inside
# the ranges the model allows.
# epochs = 10
# learning_rate = 0.01
# batch_size = 8
# seed = 0
# An update that runs longer than this is stopped and counted as failed.
timeout_seconds = 1800
# After a failed update, wait this long before retrying; doubled after each failure...
retry_backoff_seconds = 60
# ... up to this.
max_backoff_seconds = 3600
# Corrections whose candidate the gate rejects this many times end as "rejected"
# (with the gate's reason) instead of being retried forever.
max_attempts = 3

[gate]
# Check each candidate model before it becomes current.
enabled = true
# Share of the corrections held aside (not trained on) to compare candidate and current.
holdout_fraction = 0.2
# Hold corrections aside only once at least this many can be.
min_holdout = 5
# How much worse (accuracy, 0..1) the candidate may be and still be made current.
tolerance = 0.0

[intake]
# "native" (inotify/FSEvents) or "polling" (network shares and sync folders where
# native events get lost).
observer = "native"
# Seconds between two looks at the folders with the polling observer.
polling_interval = 2.0
# Full rescan of the folders every this many seconds: events are hints, the rescan is
# the truth.
rescan_seconds = 300
# A file is taken once its size and modification time have not changed for this long
# (on Linux, as soon as its writer closed it, if it decodes).
stability_seconds = 2.0
# Extra file or folder names (globs) to ignore; hidden files and the temporary names of
# sync tools (Syncthing, Nextcloud, rsync, browsers, iCloud, Synology) are always ignored.
ignore = []
# Images with more pixels than this are refused (decompression bomb guard).
max_pixels = 178956970
# How images are fitted to the model's input size: "scaleFill" (stretch),
# "centerCrop" or "scaleFit".
resize = "scaleFill"
# Follow symbolic links that point inside this workspace (links pointing outside it are
# never followed).
follow_symlinks = false

[store]
# Model versions kept in models/versions/ (version 1 and the current one are always kept).
keep_versions = 20

[daemon]
# Seconds to wait for a running update at shut-down before abandoning it.
shutdown_timeout = 30
# "debug", "info", "warning" or "error".
log_level = "info"
# "auto" (JSON lines unless stderr is a terminal), "json" or "console".
log_format = "auto"
"""
