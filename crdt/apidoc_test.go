//go:build !js

// (A check of the source text: it runs natively only, once; parsed in wasm it took 17 s.)

package crdt_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestExportedIdentifiersDocumented: every exported identifier of the packages a developer
// adopts (crdt and hlc) has a doc comment, as `go doc -all` shows it — functions, methods of
// exported types, types, constants and variables (a group's comment covers its members),
// and the exported fields of exported structs and methods of exported interfaces (a comment
// above or at the end of the line).
func TestExportedIdentifiersDocumented(t *testing.T) {
	for _, dir := range []string{".", "../hlc"} {
		for _, miss := range undocumented(t, dir) {
			t.Errorf("%s: no doc comment", miss)
		}
	}
}

// undocumented lists the exported identifiers of the package in dir (its non-test files)
// that have no doc comment, as "file:line name".
func undocumented(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	miss := func(pos token.Pos, name string) {
		p := fset.Position(pos)
		out = append(out, filepath.Base(p.Filename)+":"+strconv.Itoa(p.Line)+" "+name)
	}
	has := func(groups ...*ast.CommentGroup) bool {
		for _, g := range groups {
			if g != nil && strings.TrimSpace(g.Text()) != "" {
				return true
			}
		}
		return false
	}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					recv := receiverName(d.Recv.List[0].Type)
					if !ast.IsExported(recv) {
						continue
					}
					name = recv + "." + name
				}
				if !has(d.Doc) {
					miss(d.Pos(), name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						if !has(s.Doc, s.Comment) && !(len(d.Specs) == 1 && has(d.Doc)) {
							miss(s.Pos(), s.Name.Name)
						}
						members(s, has, miss)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() && !has(s.Doc, s.Comment, d.Doc) {
								miss(n.Pos(), n.Name)
							}
						}
					}
				}
			}
		}
	}
	return out
}

// members checks the exported fields of an exported struct type and the methods of an
// exported interface type.
func members(s *ast.TypeSpec, has func(...*ast.CommentGroup) bool, miss func(token.Pos, string)) {
	var fields *ast.FieldList
	switch ty := s.Type.(type) {
	case *ast.StructType:
		fields = ty.Fields
	case *ast.InterfaceType:
		fields = ty.Methods
	default:
		return
	}
	for _, field := range fields.List {
		for _, n := range field.Names {
			if n.IsExported() && !has(field.Doc, field.Comment) {
				miss(n.Pos(), s.Name.Name+"."+n.Name)
			}
		}
	}
}

func receiverName(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
