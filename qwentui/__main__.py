from qwentui.cli import entry

entry()
