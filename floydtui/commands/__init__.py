"""One module per command; `floydtui.cli` imports only the one chosen."""
