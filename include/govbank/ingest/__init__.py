"""One bank's files through the stages, from the inbox to the receipt."""
