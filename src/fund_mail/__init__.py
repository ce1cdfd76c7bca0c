from fund_mail.version import __version__ as __version__
