package archtest

import (
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"strings"
	"testing"
)

// publicPackages are the packages of this module an outside program may import: everything but internal/,
// the commands, the benchmarks and the examples (leaves, see TestNothingImportsCommands).
func publicPackages(t *testing.T) []string {
	t.Helper()
	var pub []string
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{.Name}}", module+"/...") {
		path, name, _ := strings.Cut(line, ":")
		rel := strings.TrimPrefix(path, module+"/")
		if name == "main" || isInternal(path) || strings.HasPrefix(rel, "cmd/") || rel == "bench" ||
			strings.HasPrefix(rel, "bench/") || strings.HasPrefix(rel, "examples/") {
			continue
		}
		pub = append(pub, path)
	}
	return pub
}

func isInternal(path string) bool {
	return strings.HasSuffix(path, "/internal") || strings.Contains(path, "/internal/")
}

// TestPublicAPINamesNoInternalType keeps every exported identifier of a public package nameable from another
// module: a field, parameter, result, constant or method whose type lives under internal/ cannot be used (or
// even declared) by an embedder, so the API would be public in name only.
func TestPublicAPINamesNoInternalType(t *testing.T) {
	pub := publicPackages(t)
	if len(pub) < 5 {
		t.Fatalf("found only %d public packages (%v); the listing is broken", len(pub), pub)
	}
	imp := exportImporter(t, pub)
	for _, path := range pub {
		pkg, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, msg := range internalTypesInAPI(pkg) {
			t.Errorf("%s", msg)
		}
	}
}

// exportImporter reads the compiler's export data of pkgs and their dependencies (go list -export), which
// carries exactly the types the compiler sees.
func exportImporter(t *testing.T, pkgs []string) types.Importer {
	t.Helper()
	files := map[string]string{}
	args := append([]string{"-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}"}, pkgs...)
	for _, line := range goList(t, args...) {
		if path, file, ok := strings.Cut(line, "="); ok && file != "" {
			files[path] = file
		}
	}
	return importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		f, ok := files[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
}

// internalTypesInAPI lists the exported identifiers of pkg whose declared type mentions a named type of an
// internal package: exported package-level objects, the exported fields and methods of exported types, and
// embedded fields (whose methods are promoted).
func internalTypesInAPI(pkg *types.Package) []string {
	var out []string
	report := func(what string, typ types.Type) {
		if n := internalNamed(typ, map[types.Type]bool{}); n != "" {
			out = append(out, fmt.Sprintf("%s.%s uses %s, a type outside code cannot name (make it public or unexport the identifier)",
				pkg.Path(), what, n))
		}
	}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		tn, isType := obj.(*types.TypeName)
		if !isType {
			report(name, obj.Type())
			continue
		}
		if tn.IsAlias() {
			report(name, obj.Type())
			continue
		}
		named, _ := obj.Type().(*types.Named)
		if named == nil {
			continue
		}
		switch u := named.Underlying().(type) {
		case *types.Struct:
			for i := 0; i < u.NumFields(); i++ {
				if f := u.Field(i); f.Exported() || f.Embedded() {
					report(name+"."+f.Name(), f.Type())
				}
			}
		case *types.Interface:
			for i := 0; i < u.NumMethods(); i++ {
				if m := u.Method(i); m.Exported() {
					report(name+"."+m.Name(), m.Type())
				}
			}
		default:
			report(name, u)
		}
		for i := 0; i < named.NumMethods(); i++ {
			if m := named.Method(i); m.Exported() {
				report(name+"."+m.Name(), m.Type())
			}
		}
	}
	return out
}

// internalNamed returns the first named type under internal/ that t mentions, or "". A public named type is
// not looked into: it is checked as an identifier of its own package.
func internalNamed(t types.Type, seen map[types.Type]bool) string {
	if seen[t] {
		return ""
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		if o := t.Obj(); o.Pkg() != nil && isInternal(o.Pkg().Path()) {
			return o.Pkg().Path() + "." + o.Name()
		}
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				if n := internalNamed(args.At(i), seen); n != "" {
					return n
				}
			}
		}
		return ""
	case *types.Alias:
		return internalNamed(types.Unalias(t), seen)
	case *types.Pointer:
		return internalNamed(t.Elem(), seen)
	case *types.Slice:
		return internalNamed(t.Elem(), seen)
	case *types.Array:
		return internalNamed(t.Elem(), seen)
	case *types.Map:
		if n := internalNamed(t.Key(), seen); n != "" {
			return n
		}
		return internalNamed(t.Elem(), seen)
	case *types.Chan:
		return internalNamed(t.Elem(), seen)
	case *types.Signature:
		for _, tup := range []*types.Tuple{t.Params(), t.Results()} {
			for i := 0; i < tup.Len(); i++ {
				if n := internalNamed(tup.At(i).Type(), seen); n != "" {
					return n
				}
			}
		}
		return ""
	case *types.Struct:
		for i := 0; i < t.NumFields(); i++ {
			if f := t.Field(i); f.Exported() || f.Embedded() {
				if n := internalNamed(f.Type(), seen); n != "" {
					return n
				}
			}
		}
		return ""
	case *types.Interface:
		for i := 0; i < t.NumMethods(); i++ {
			if n := internalNamed(t.Method(i).Type(), seen); n != "" {
				return n
			}
		}
		return ""
	}
	return ""
}
