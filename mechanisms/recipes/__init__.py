"""Methods that wire several families together: InstantID (adapter + IdentityNet), IDM-VTON (reference UNet +
IP-Adapter + concat latents)."""
