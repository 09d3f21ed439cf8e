"""SMS, WhatsApp and the phone line through Twilio: webhooks in, the REST API out."""
