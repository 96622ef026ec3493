package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func newCreate(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a namespace, configmap or secret from the command line"}
	create := func(cmd *cobra.Command, kind string, obj metaObject) error {
		k, _ := kinds.ByKind(kind)
		c, err := e.client()
		if err != nil {
			return err
		}
		ctx, cancel := e.ctx(cmd)
		defer cancel()
		ns := e.nsFor(k, false)
		obj.GetMetadata().Namespace = ns
		_, ws, err := c.Create(ctx, k, ns, obj, false)
		e.warn(ws)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Out, "%s created\n", printers.ResourceName(k, obj.GetMetadata().GetName()))
		return nil
	}
	cmd.AddCommand(&cobra.Command{
		Use: "namespace NAME", Aliases: []string{"ns"}, Short: "Create a namespace", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return create(cmd, "Namespace", &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: args[0]}})
		},
	})

	var literals, fromFiles []string
	var secretType string
	cm := &cobra.Command{
		Use: "configmap NAME [--from-literal=K=V] [--from-file=[K=]PATH]", Aliases: []string{"cm"},
		Short: "Create a configmap from literals and files", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := keyValues(literals, fromFiles)
			if err != nil {
				return err
			}
			obj := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: args[0]}}
			for k, v := range data {
				if utf8.Valid(v) {
					if obj.Data == nil {
						obj.Data = map[string]string{}
					}
					obj.Data[k] = string(v)
					continue
				}
				if obj.BinaryData == nil { // not text: kept as bytes, as kubectl does
					obj.BinaryData = map[string][]byte{}
				}
				obj.BinaryData[k] = v
			}
			return create(cmd, "ConfigMap", obj)
		},
	}
	cm.Flags().StringArrayVar(&literals, "from-literal", nil, "a key and literal value, KEY=VALUE (repeatable)")
	cm.Flags().StringArrayVar(&fromFiles, "from-file", nil, "a file (key = file name, or KEY=PATH), or a directory of files (repeatable)")
	cmd.AddCommand(cm)

	secret := &cobra.Command{Use: "secret", Short: "Create a secret"}
	generic := &cobra.Command{
		Use: "generic NAME [--from-literal=K=V] [--from-file=[K=]PATH] [--type=T]", Short: "Create a secret from literals and files",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := keyValues(literals, fromFiles)
			if err != nil {
				return err
			}
			return create(cmd, "Secret", &corev1.Secret{Metadata: &metav1.ObjectMeta{Name: args[0]}, Data: data, Type: secretType})
		},
	}
	generic.Flags().StringArrayVar(&literals, "from-literal", nil, "a key and literal value, KEY=VALUE (repeatable)")
	generic.Flags().StringArrayVar(&fromFiles, "from-file", nil, "a file (key = file name, or KEY=PATH), or a directory of files (repeatable)")
	generic.Flags().StringVar(&secretType, "type", "", "the secret's type (default Opaque)")
	secret.AddCommand(generic)
	cmd.AddCommand(secret)
	return cmd
}

// keyValues collects --from-literal and --from-file pairs; a duplicate key is an
// error, as in kubectl.
func keyValues(literals, files []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	add := func(k string, v []byte) error {
		if _, dup := out[k]; dup {
			return fmt.Errorf("cannot add key %q, another key by that name already exists", k)
		}
		out[k] = v
		return nil
	}
	for _, l := range literals {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid literal source %q, expected key=value", l)
		}
		if err := add(k, []byte(v)); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		key, path, named := strings.Cut(f, "=")
		if !named {
			path = f
		}
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("--from-file %s: %w", f, err)
		}
		if info.IsDir() {
			if named {
				return nil, fmt.Errorf("--from-file %s: a directory cannot be given a key", f)
			}
			entries, err := os.ReadDir(path)
			if err != nil {
				return nil, err
			}
			for _, ent := range entries {
				if ent.Type().IsRegular() {
					b, err := os.ReadFile(filepath.Join(path, ent.Name()))
					if err != nil {
						return nil, err
					}
					if err := add(ent.Name(), b); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if !named {
			key = filepath.Base(path)
		}
		if err := add(key, b); err != nil {
			return nil, err
		}
	}
	return out, nil
}
