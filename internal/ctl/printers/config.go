package printers

import (
	"strconv"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func init() {
	register("ConfigMap", []column{{name: "NAME"}, {name: "DATA"}, {name: "AGE"}},
		func(cm *corev1.ConfigMap, c rowContext) []string {
			n := len(cm.GetData()) + len(cm.GetBinaryData())
			return []string{cm.GetMetadata().GetName(), strconv.Itoa(n), c.age(cm.GetMetadata())}
		})
	register("Secret", []column{{name: "NAME"}, {name: "TYPE"}, {name: "DATA"}, {name: "AGE"}}, secretRow)
	register("ServiceAccount", []column{{name: "NAME"}, {name: "SECRETS"}, {name: "AGE"}},
		func(sa *corev1.ServiceAccount, c rowContext) []string {
			return []string{sa.GetMetadata().GetName(), strconv.Itoa(len(sa.GetSecrets())), c.age(sa.GetMetadata())}
		})
}

// secretRow counts the keys of data and stringData together, as kubectl counts a
// secret's data after the API server has merged stringData into it.
func secretRow(s *corev1.Secret, c rowContext) []string {
	n := len(s.GetData())
	for k := range s.GetStringData() {
		if _, ok := s.GetData()[k]; !ok {
			n++
		}
	}
	return []string{s.GetMetadata().GetName(), s.GetType(), strconv.Itoa(n), c.age(s.GetMetadata())}
}
