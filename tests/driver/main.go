// Command cnidriver runs a CNI network configuration list through the real libcni,
// the way a container runtime does, so that tests exercise plugins end to end.
//
// Usage:
//
//	cnidriver add|check|del --conflist FILE --netns PATH --id CONTAINERID
//	          [--ifname eth0] [--cache-dir DIR] [--args 'K=V;K=V']
//	          [--capability-args JSON]
//	cnidriver version --type PLUGIN
//
// Plugins are searched in CNI_PATH (a colon-separated list). A --conflist of "-"
// reads the list from stdin. On success ADD and version print JSON on stdout;
// CHECK and DEL print nothing. On failure the error is printed on stdout as a CNI
// error object {"code","msg","details"} and the exit status is 1. Errors raised by
// libcni itself rather than by a plugin carry code 0, which no plugin may use.
//
// Built against Debian's libcni 1.1.2 (golang-github-appc-cni-dev): it speaks CNI
// spec versions up to 1.0.0, ignores a "cniVersions" list and has no GC or STATUS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// Long enough for a cold start of every plugin in a list; short enough that a hung
// plugin fails the test instead of the CI job.
const commandTimeout = 60 * time.Second

type options struct {
	conflist       string
	netns          string
	containerID    string
	ifname         string
	cacheDir       string
	args           string
	capabilityArgs string
	pluginType     string
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	command := os.Args[1]
	opts, err := parseFlags(command, os.Args[2:])
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if err := run(ctx, command, opts); err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cnidriver add|check|del --conflist FILE --netns PATH "+
		"--id CONTAINERID [--ifname eth0] [--cache-dir DIR] [--args 'K=V;K=V'] "+
		"[--capability-args JSON]\n       cnidriver version --type PLUGIN")
	os.Exit(2)
}

func parseFlags(command string, argv []string) (*options, error) {
	opts := &options{}
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.StringVar(&opts.conflist, "conflist", "", "network configuration list file, - for stdin")
	fs.StringVar(&opts.netns, "netns", "", "path of the container's network namespace")
	fs.StringVar(&opts.containerID, "id", "", "container ID")
	fs.StringVar(&opts.ifname, "ifname", "eth0", "interface name inside the container")
	fs.StringVar(&opts.cacheDir, "cache-dir", "", "libcni result cache (default /var/lib/cni)")
	fs.StringVar(&opts.args, "args", "", "CNI_ARGS as K=V;K=V")
	fs.StringVar(&opts.capabilityArgs, "capability-args", "", "runtimeConfig capability arguments as JSON")
	fs.StringVar(&opts.pluginType, "type", "", "plugin executable name (version only)")
	if err := fs.Parse(argv); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	var missing []string
	switch command {
	case "add", "check", "del":
		if opts.conflist == "" {
			missing = append(missing, "--conflist")
		}
		if opts.containerID == "" {
			missing = append(missing, "--id")
		}
		// A runtime may DEL without a namespace when it is already gone.
		if opts.netns == "" && command != "del" {
			missing = append(missing, "--netns")
		}
	case "version":
		if opts.pluginType == "" {
			missing = append(missing, "--type")
		}
	default:
		usage()
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing required flags: %s", strings.Join(missing, ", "))
	}
	return opts, nil
}

func run(ctx context.Context, command string, opts *options) error {
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), opts.cacheDir, nil)
	if command == "version" {
		info, err := cni.GetVersionInfo(ctx, opts.pluginType)
		if err != nil {
			return err
		}
		return printJSON(info)
	}

	list, err := loadConfList(opts.conflist)
	if err != nil {
		return err
	}
	rt, err := runtimeConf(opts)
	if err != nil {
		return err
	}

	switch command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.PrintTo(os.Stdout)
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	default:
		return cni.DelNetworkList(ctx, list, rt)
	}
}

func loadConfList(path string) (*libcni.NetworkConfigList, error) {
	if path != "-" {
		return libcni.ConfListFromFile(path)
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("failed to read conflist from stdin: %w", err)
	}
	return libcni.ConfListFromBytes(data)
}

func runtimeConf(opts *options) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: opts.containerID,
		NetNS:       opts.netns,
		IfName:      opts.ifname,
	}
	for _, pair := range strings.Split(opts.args, ";") {
		if pair == "" {
			continue
		}
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 {
			return nil, fmt.Errorf("failed to parse --args: %q is not K=V", pair)
		}
		rt.Args = append(rt.Args, [2]string{kv[0], kv[1]})
	}
	if opts.capabilityArgs != "" {
		if err := json.Unmarshal([]byte(opts.capabilityArgs), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("failed to parse --capability-args: %w", err)
		}
	}
	return rt, nil
}

func printJSON(v interface{}) error {
	data, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(os.Stdout, "%s\n", data)
	return err
}

// fail prints err as a CNI error object and exits 1. A plugin's error keeps its
// code, message and details; libcni wraps it ("plugin type=... failed (add): ..."),
// and that full text goes to stderr for the test log.
func fail(err error) {
	out := &types.Error{Msg: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out = cniErr
	}
	fmt.Fprintf(os.Stderr, "cnidriver: %v\n", err)
	if perr := printJSON(out); perr != nil {
		fmt.Fprintf(os.Stderr, "cnidriver: failed to print error: %v\n", perr)
	}
	os.Exit(1)
}
