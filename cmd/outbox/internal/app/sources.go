package app

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// noEnvAnnotation marks a flag that only the command line sets.
const noEnvAnnotation = "outbox_no_env"

// NoEnv marks f as a flag that neither the environment nor the config file
// sets: per-invocation switches such as --yes and --all, which must never
// be on by default.
func NoEnv(f *pflag.Flag) {
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[noEnvAnnotation] = []string{"true"}
}

func fromEnvAllowed(f *pflag.Flag) bool {
	_, no := f.Annotations[noEnvAnnotation]
	return !no && f.Name != "help" && f.Name != "version"
}

// envNames are the environment variables whose name is not derived from
// their flag's.
var envNames = map[string]string{
	"store":  "OUTBOX_STORE_URL",
	"broker": "OUTBOX_BROKER_URL",
}

// EnvName returns the environment variable that sets the flag named name:
// OUTBOX_ and the name in upper case with dashes as underscores
// (--batch-size is OUTBOX_BATCH_SIZE), except OUTBOX_STORE_URL and
// OUTBOX_BROKER_URL for --store and --broker.
func EnvName(name string) string {
	if env, ok := envNames[name]; ok {
		return env
	}
	return "OUTBOX_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ConfigEnv names the config file when --config is not given.
const ConfigEnv = "OUTBOX_CONFIG"

// Source says where the value of the flag named name came from, in the
// words an error message needs: "--store", "OUTBOX_STORE_URL" or
// "store in outbox.yaml". Flags left at their default read as "--name".
func (a *App) Source(name string) string {
	if s, ok := a.sources[name]; ok {
		return s
	}
	return "--" + name
}

// Prepare is the root command's PersistentPreRunE: it fills every flag of
// cmd that the command line did not set from the environment, then from
// the config file, records where each value came from (see [App.Source]),
// and builds the logger.
func (a *App) Prepare(cmd *cobra.Command, _ []string) error {
	a.sources = map[string]string{}
	a.fromFile = map[string]string{}
	fs := cmd.Flags()

	path, pathSource := a.configPath, "--config"
	if !fs.Changed("config") {
		path, pathSource = a.getenv(ConfigEnv), ConfigEnv
	}
	var file map[string][]string
	if path != "" {
		var err error
		file, err = readConfigFile(path, cmd.Root())
		if err != nil {
			return Usagef("%s: %v", pathSource, err)
		}
	}

	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if firstErr != nil {
			return
		}
		if f.Changed {
			a.sources[f.Name] = "--" + f.Name
			return
		}
		if !fromEnvAllowed(f) {
			return
		}
		env := EnvName(f.Name)
		if v, ok := a.lookupEnv(env); ok {
			a.sources[f.Name] = env
			if err := setFlag(fs, f, []string{v}, true); err != nil {
				firstErr = Usagef("%s=%q: %v", env, v, err)
			}
			return
		}
		if vs, ok := file[f.Name]; ok {
			a.sources[f.Name] = fmt.Sprintf("%q in %s", f.Name, path)
			a.fromFile[f.Name] = pathSource
			if err := setFlag(fs, f, vs, false); err != nil {
				firstErr = Usagef("%s: %q: %v", path, f.Name, err)
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	return a.buildLogger()
}

// lookupEnv treats an empty variable as unset, so that OUTBOX_X= in a
// deployment manifest falls through to the config file and the default.
func (a *App) lookupEnv(name string) (string, bool) {
	v := a.getenv(name)
	return v, v != ""
}

// setFlag sets f from values. A list flag takes each value, and an
// environment value as a comma-separated list; other flags take one value.
func setFlag(fs *pflag.FlagSet, f *pflag.Flag, values []string, fromEnv bool) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		for _, v := range values {
			if fromEnv {
				for item := range strings.SplitSeq(v, ",") {
					if item = strings.TrimSpace(item); item != "" {
						items = append(items, item)
					}
				}
			} else {
				items = append(items, v)
			}
		}
		if err := sv.Replace(items); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	if len(values) != 1 {
		return fmt.Errorf("takes one value, not a list")
	}
	return fs.Set(f.Name, values[0])
}

// readConfigFile reads a YAML mapping of flag names to values (a scalar,
// or a list for list flags). A key that no command of root knows is an
// error with a suggestion, so that a typo is not ignored.
func readConfigFile(path string, root *cobra.Command) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return nil, nil // an empty file
		}
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of flag names to values, e.g. \"batch-size: 100\"", top.Line)
	}
	known := allFlagNames(root)
	values := map[string][]string{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		name := k.Value
		if !slices.Contains(known, name) {
			msg := fmt.Sprintf("line %d: unknown key %q", k.Line, name)
			if s := Closest(name, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			return nil, fmt.Errorf("%s (keys are the long flag names)", msg)
		}
		switch v.Kind {
		case yaml.ScalarNode:
			values[name] = []string{v.Value}
		case yaml.SequenceNode:
			list := []string{}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: %q: list items must be plain values", item.Line, name)
				}
				list = append(list, item.Value)
			}
			values[name] = list
		default:
			return nil, fmt.Errorf("line %d: %q: want a value or a list of values", v.Line, name)
		}
	}
	return values, nil
}

// allFlagNames lists the flags that the environment and config files may
// set, across every command of root.
func allFlagNames(root *cobra.Command) []string {
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if fromEnvAllowed(f) {
					seen[f.Name] = true
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DocumentEnv appends the environment variable of each flag of root's
// commands to its usage line, so that --help shows it.
func DocumentEnv(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if fromEnvAllowed(f) && !strings.Contains(f.Usage, "(env ") {
					f.Usage += " (env " + EnvName(f.Name) + ")"
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
