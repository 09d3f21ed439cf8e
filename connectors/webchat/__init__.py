"""The chat on the town's website: the widget's socket, uploads and files; answers pushed live."""
