package printers

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	rbacv1 "github.com/rafter-dev/rafter/gen/rafter/rbac/v1"
)

func init() {
	// kubectl has no columns of its own for roles: it shows the API server's
	// default table, whose second column is the creation time in RFC 3339.
	createdAt := kindTable{
		columns: []column{{name: "NAME"}, {name: "CREATED AT"}},
		cells: func(obj proto.Message, _ rowContext) []string {
			md := metadata(obj)
			created := "<unknown>"
			if ts := md.GetCreationTimestamp(); ts != nil {
				created = ts.AsTime().UTC().Format(time.RFC3339)
			}
			return []string{md.GetName(), created}
		},
	}
	tables["Role"] = createdAt
	tables["ClusterRole"] = createdAt

	bindingColumns := []column{
		{name: "NAME"}, {name: "ROLE"}, {name: "AGE"},
		{name: "USERS", wide: true}, {name: "GROUPS", wide: true}, {name: "SERVICEACCOUNTS", wide: true},
	}
	register("RoleBinding", bindingColumns, func(b *rbacv1.RoleBinding, c rowContext) []string {
		return bindingRow(b.GetMetadata().GetName(), b.GetRoleRef(), b.GetSubjects(), c.age(b.GetMetadata()))
	})
	register("ClusterRoleBinding", bindingColumns, func(b *rbacv1.ClusterRoleBinding, c rowContext) []string {
		return bindingRow(b.GetMetadata().GetName(), b.GetRoleRef(), b.GetSubjects(), c.age(b.GetMetadata()))
	})
}

func bindingRow(name string, ref *rbacv1.RoleRef, subjects []*rbacv1.Subject, age string) []string {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.GetKind() {
		case "ServiceAccount":
			sas = append(sas, s.GetNamespace()+"/"+s.GetName())
		case "User":
			users = append(users, s.GetName())
		case "Group":
			groups = append(groups, s.GetName())
		}
	}
	return []string{
		name,
		ref.GetKind() + "/" + ref.GetName(),
		age,
		strings.Join(users, ", "),
		strings.Join(groups, ", "),
		strings.Join(sas, ", "),
	}
}
