"""Microsoft Graph: sign-in (auth), transport (client, retry), folder names and attachments."""
