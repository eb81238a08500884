"""The mycni main plugin: a veth per pod, routed by the node, with a VXLAN overlay."""
