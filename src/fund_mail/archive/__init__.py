"""The archive on disk: rows, the pst-utils DBs, the index, the commit protocol, the cursor.

The only package that speaks SQL. It never imports graph/.
"""
