"""Where settings, connection ids and bank contracts come from."""
