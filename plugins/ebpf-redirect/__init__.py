"""ebpf-redirect: a chained CNI plugin that attaches the from_pod tc fast path."""
