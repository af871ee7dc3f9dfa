"""Double UNet / reference attention: a reference pass whose self-attention features join the main pass's."""
