"""fund_mail_pst: import PST backups into the archive schema."""
