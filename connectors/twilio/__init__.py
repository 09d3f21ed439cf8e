"""SMS and WhatsApp through Twilio (voice follows): webhooks in, the REST API out."""
