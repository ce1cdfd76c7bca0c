"""The IMAP source: the same archive rows as Graph, read from any IMAP server (imapclient)."""
