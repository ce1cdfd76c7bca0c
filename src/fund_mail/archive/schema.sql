-- The pst-utils archive schema the downstream server reads. Names, order and declared types
-- must not change, and no other tables or columns may be added to archive DB files.
CREATE TABLE fund_mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_id TEXT,
    subject TEXT,
    sender_address TEXT,
    sender_name TEXT,
    from_address TEXT,
    from_name TEXT,
    to_recipients TEXT,
    cc_recipients TEXT,
    email_time TEXT,
    kst_time TEXT,
    content TEXT,
    msg_kind TEXT,
    folder_path TEXT,
    note TEXT DEFAULT ''
);

CREATE TABLE fund_mail_attach (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id INTEGER REFERENCES fund_mail(id) ON DELETE CASCADE,
    email_id TEXT,
    save_folder TEXT,
    org_file_name TEXT,
    phy_file_name TEXT,
    file_size INTEGER DEFAULT 0
);
