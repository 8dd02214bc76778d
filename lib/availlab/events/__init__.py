"""Events (Jepsen's nemeses): things done to the lab while clients run, each recording its own
phases on the history's clock. Live migration now; backup, restore and faults join here."""
