// dockerfile-check converts a Dockerfile to BuildKit's LLB with BuildKit's own Dockerfile frontend
// (github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb) for one target and one set of build
// arguments — what `docker build --target T --build-arg K=V` and `docker compose build` do before
// anything runs — without a Docker engine and without pulling: base images are "resolved" to an
// empty image config offline, so only the Dockerfile itself can fail.
//
// Why the real frontend rather than reading the file: BuildKit expands the FROM line of every stage,
// reachable from the target or not, and refuses an empty base name or an invalid reference before
// the first step runs (convert.go: buildDispatchStates, then resolveBaseImage). A hand-written
// reader encodes a guess about such rules; this program runs them.
//
// Usage: dockerfile-check -f Dockerfile [-target T] [-build-arg K=V]...
// Exit 0 with a one-line summary; exit 1 with BuildKit's error, or with its build-check warnings
// (e.g. UndefinedArgInFrom), which a real build would print and this project treats as defects.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offlineResolver answers every image lookup with an empty linux/amd64 image config: the image
// reference has already been parsed by the frontend when it gets here, which is the check we want.
type offlineResolver struct{ resolved []string }

func (r *offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	r.resolved = append(r.resolved, ref)
	config, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{}})
	return ref, digest.FromBytes(config), config, err
}

type buildArgs map[string]string

func (a buildArgs) String() string { return fmt.Sprint(map[string]string(a)) }
func (a buildArgs) Set(value string) error {
	key, val, ok := strings.Cut(value, "=")
	if !ok {
		return fmt.Errorf("build argument %q is not KEY=VALUE", value)
	}
	a[key] = val
	return nil
}

func main() {
	file := flag.String("f", "Dockerfile", "the Dockerfile")
	target := flag.String("target", "", "the stage to build (default: the last)")
	args := buildArgs{}
	flag.Var(args, "build-arg", "KEY=VALUE, repeatable")
	flag.Parse()

	source, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var warnings []string
	resolver := &offlineResolver{}
	opt := dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{Target: *target, BuildArgs: args},
		MetaResolver: resolver,
		Warn: func(rule, _, _, message string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			warnings = append(warnings, fmt.Sprintf("%s:%d: %s: %s", *file, line, rule, message))
		},
	}
	ctx := context.Background()
	result, err := dockerfile2llb.Dockerfile2LLB(ctx, source, opt)
	if err == nil {
		_, err = result.State.Marshal(ctx)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s (target %q): BuildKit refuses it: %v\n", *file, *target, err)
		os.Exit(1)
	}
	if len(warnings) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(warnings, "\n"))
		os.Exit(1)
	}
	fmt.Printf("%s (target %q): converts; base images %s\n", *file, *target, strings.Join(resolver.resolved, ", "))
}
