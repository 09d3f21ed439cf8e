"""Facebook Messenger through a Meta app on the town's Page: webhooks in, the Send API out."""
