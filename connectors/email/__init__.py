"""The e-mail channel: ``connector.py`` (the connector), ``mailbox.py`` (IMAP in), ``parse.py``
(MIME to a message), ``send.py`` (SMTP out), ``options.py`` (``channels.email`` in meldpunt.yaml).
"""
