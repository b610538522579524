"""Where a model's drift profile lives: the one name both the server's stat (the package's
`load_monitor`) and the profile's reader and writer use."""

from __future__ import annotations

PROFILE_FILE = "drift_profile.json"
