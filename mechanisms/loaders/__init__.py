"""File formats -> typed objects (IP-Adapter files, diffusers UNets, IDM-VTON's UNets). Nothing here runs while
sampling."""
