"""A message as it comes in and as it is kept: its envelope, its header block, its wire
form, its queue id and the signatures it asks for."""
