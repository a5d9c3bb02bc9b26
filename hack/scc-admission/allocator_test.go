package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/library-go/pkg/security/uid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// mcsReference is OpenShift's MCS label for an offset (the co-lex unrank
// of openshift's pkg/security/mcs: categories c0..c1023, k of them, the
// highest first), written out independently of mcsLabel.
func mcsReference(prefix string, offset uint64, k int) string {
	binomial := func(n, k uint64) uint64 {
		if n < k {
			return 0
		}
		r := uint64(1)
		for d := uint64(1); d <= k; d++ {
			r = r * (n - d + 1) / d
		}
		return r
	}
	n := uint64(1024)
	var cats []string
	for i := k; i > 0; i-- {
		for binomial(n, uint64(i)) > offset {
			n--
		}
		cats = append(cats, fmt.Sprintf("c%d", n))
		offset -= binomial(n, uint64(i))
	}
	return prefix + ":" + strings.Join(cats, ",")
}

// TestMCSLabel: the n-th label is OpenShift's label at offset n (pairs of
// categories in co-lex order: c1,c0; c2,c0; c2,c1; c3,c0 ...), every block
// of the default range gets a different one, and all categories are below
// c1024. OpenShift's default configuration (mcsLabelsPerProject: 5) gives
// block n the label at offset 5n; here block n gets the label at offset n,
// which is as unique.
func TestMCSLabel(t *testing.T) {
	for n, want := range map[uint32]string{
		0: "s0:c1,c0", 1: "s0:c2,c0", 2: "s0:c2,c1", 3: "s0:c3,c0", 4: "s0:c3,c1", 5: "s0:c3,c2", 6: "s0:c4,c0",
		9: "s0:c4,c3", 10: "s0:c5,c0", 15: "s0:c6,c0", 20: "s0:c6,c5",
	} {
		if got := mcsLabel("s0", n); got != want {
			t.Errorf("mcsLabel(s0, %d) = %s, want %s", n, got, want)
		}
	}
	if got := mcsLabel("s1", 1); got != "s1:c2,c0" {
		t.Errorf("prefix: %s", got)
	}
	r, err := uid.ParseRange(defaultRange)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint32{}
	for n := uint32(0); n < r.Size(); n++ {
		got := mcsLabel("s0", n)
		if want := mcsReference("s0", uint64(n), 2); got != want {
			t.Fatalf("mcsLabel(s0, %d) = %s, OpenShift's label at %d is %s", n, got, n, want)
		}
		if m, dup := seen[got]; dup {
			t.Fatalf("blocks %d and %d both get %s", m, n, got)
		}
		seen[got] = n
	}
	last := mcsLabel("s0", r.Size()-1)
	var hi, lo int
	if _, err := fmt.Sscanf(last, "s0:c%d,c%d", &hi, &lo); err != nil || hi >= 1024 || lo >= hi {
		t.Errorf("label of the last block: %s", last)
	}
}

// allocatorFixture is an allocator over a fake clientset, its informer
// synced and its watch established.
type allocatorFixture struct {
	client  *k8sfake.Clientset
	alloc   *allocator
	factory informers.SharedInformerFactory
}

func newAllocatorFixture(t *testing.T, uidRange string, namespaces ...*corev1.Namespace) *allocatorFixture {
	t.Helper()
	objs := make([]k8sruntime.Object, len(namespaces))
	for i, ns := range namespaces {
		objs[i] = ns
	}
	client := k8sfake.NewClientset(objs...)
	// The informer's watch is known to be in place once this reactor has run.
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("namespaces", func(action k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err == nil {
			once.Do(func() { close(watching) })
		}
		return true, w, err
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	a, err := newAllocator(client, factory.Core().V1().Namespaces(), uidRange, "s0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), factory.Core().V1().Namespaces().Informer().HasSynced) {
		t.Fatal("informer did not sync")
	}
	<-watching
	return &allocatorFixture{client: client, alloc: a, factory: factory}
}

func (f *allocatorFixture) namespaces(t *testing.T) map[string]*corev1.Namespace {
	t.Helper()
	list, err := f.client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.Namespace{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

// patches returns the merge patches sent for each namespace.
func (f *allocatorFixture) patches(t *testing.T) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, a := range f.client.Actions() {
		p, ok := a.(k8stesting.PatchAction)
		if !ok || a.GetVerb() != "patch" {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			t.Fatal(err)
		}
		out[p.GetName()] = append(out[p.GetName()], body)
	}
	return out
}

func bareNamespace(name, resourceVersion string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: resourceVersion, Labels: map[string]string{"team": name}}}
}

func blockOf(t *testing.T, ns *corev1.Namespace) uint32 {
	t.Helper()
	r, _ := uid.ParseRange(defaultRange)
	b, err := uid.ParseBlock(ns.Annotations[securityv1.UIDRangeAnnotation])
	if err != nil {
		t.Fatalf("%s: uid-range %q: %v", ns.Name, ns.Annotations[securityv1.UIDRangeAnnotation], err)
	}
	ok, n := r.Offset(b)
	if !ok {
		t.Fatalf("%s: %s is not a block of %s", ns.Name, b, defaultRange)
	}
	return n
}

func complete(ns *corev1.Namespace) bool {
	return !needsAllocation(ns)
}

// TestAllocatorAnnotatesNamespaces: namespaces without the annotations get a
// block of their own (the same as supplemental groups) and the MCS label of
// that block; blocks other namespaces hold are not handed out; a namespace
// that has its annotations keeps them; one with only a uid-range gets the
// rest for that block; a namespace created later gets one too.
func TestAllocatorAnnotatesNamespaces(t *testing.T) {
	held := annotatedNamespace("held", 0)
	held.ResourceVersion = "7"
	held.Annotations["other"] = "kept"
	partial := bareNamespace("partial", "8")
	partial.Annotations = map[string]string{securityv1.UIDRangeAnnotation: "1000030000/10000"}
	// its own supplemental groups, no MCS label
	partial2 := bareNamespace("partial-2", "9")
	partial2.Annotations = map[string]string{securityv1.UIDRangeAnnotation: "1000070000/10000", securityv1.SupplementalGroupsAnnotation: "5000/1000"}
	var initial []*corev1.Namespace
	initial = append(initial, held, partial, partial2)
	for i := 1; i <= 4; i++ {
		initial = append(initial, bareNamespace(fmt.Sprintf("new-%d", i), fmt.Sprint(10+i)))
	}
	f := newAllocatorFixture(t, defaultRange, initial...)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go f.alloc.run(ctx)
	if _, err := f.client.CoreV1().Namespaces().Create(ctx, bareNamespace("late", "20"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var namespaces map[string]*corev1.Namespace
	poll(t, "all namespaces annotated", func() bool {
		namespaces = f.namespaces(t)
		for _, ns := range namespaces {
			if !complete(ns) {
				return false
			}
		}
		return len(namespaces) == 8
	})

	if got := namespaces["held"]; !reflect.DeepEqual(got.Annotations, held.Annotations) {
		t.Errorf("held: annotations %v, want %v", got.Annotations, held.Annotations)
	}
	p := namespaces["partial"]
	if p.Annotations[securityv1.UIDRangeAnnotation] != "1000030000/10000" || p.Annotations[securityv1.SupplementalGroupsAnnotation] != "1000030000/10000" || p.Annotations[securityv1.MCSAnnotation] != "s0:c3,c0" {
		t.Errorf("partial: %v", p.Annotations)
	}

	p2 := namespaces["partial-2"]
	if p2.Annotations[securityv1.UIDRangeAnnotation] != "1000070000/10000" || p2.Annotations[securityv1.SupplementalGroupsAnnotation] != "5000/1000" || p2.Annotations[securityv1.MCSAnnotation] != "s0:c4,c1" {
		t.Errorf("partial-2: %v", p2.Annotations)
	}

	blocks := map[uint32]string{0: "held", 3: "partial", 7: "partial-2"}
	labels := map[string]string{}
	var fresh []uint32
	for _, name := range []string{"new-1", "new-2", "new-3", "new-4", "late"} {
		ns := namespaces[name]
		b := blockOf(t, ns)
		if other, dup := blocks[b]; dup {
			t.Errorf("%s and %s share block %d", name, other, b)
		}
		blocks[b] = name
		fresh = append(fresh, b)
		if r := ns.Annotations[securityv1.UIDRangeAnnotation]; r != fmt.Sprintf("%d/10000", 1000000000+b*10000) || ns.Annotations[securityv1.SupplementalGroupsAnnotation] != r {
			t.Errorf("%s: uid-range %q, supplemental-groups %q", name, r, ns.Annotations[securityv1.SupplementalGroupsAnnotation])
		}
		mcs := ns.Annotations[securityv1.MCSAnnotation]
		if mcs != mcsLabel("s0", b) {
			t.Errorf("%s: block %d has MCS label %s, want %s", name, b, mcs, mcsLabel("s0", b))
		}
		if other, dup := labels[mcs]; dup {
			t.Errorf("%s and %s share MCS label %s", name, other, mcs)
		}
		labels[mcs] = name
		if ns.Labels["team"] != name {
			t.Errorf("%s: labels %v", name, ns.Labels)
		}
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i] < fresh[j] })
	if want := []uint32{1, 2, 4, 5, 6}; !reflect.DeepEqual(fresh, want) {
		t.Errorf("blocks handed out: %v, want %v (in order, skipping those held)", fresh, want)
	}

	patches := f.patches(t)
	if len(patches["held"]) != 0 {
		t.Errorf("held was patched: %v", patches["held"])
	}
	for _, ns := range initial[1:] {
		ps := patches[ns.Name]
		if len(ps) != 1 {
			t.Errorf("%s: %d patches, want 1", ns.Name, len(ps))
			continue
		}
		meta := ps[0]["metadata"].(map[string]any)
		if meta["resourceVersion"] != ns.ResourceVersion {
			t.Errorf("%s: patch is not conditional on resourceVersion %s: %v", ns.Name, ns.ResourceVersion, ps[0])
		}
		patched := meta["annotations"].(map[string]any)
		for key := range ns.Annotations {
			if _, ok := patched[key]; ok {
				t.Errorf("%s: its own %s was patched: %v", ns.Name, key, ps[0])
			}
		}
		if len(patched)+len(ns.Annotations) != 3 {
			t.Errorf("%s: patched %v", ns.Name, patched)
		}
	}
}

// TestAllocatorExhaustion: when the range has no free block left, allocate
// fails and hands out nothing twice.
func TestAllocatorExhaustion(t *testing.T) {
	const tiny = "1000000000-1000029999/10000" // three blocks
	held := bareNamespace("held", "1")
	held.Annotations = map[string]string{securityv1.UIDRangeAnnotation: "1000010000/10000", securityv1.SupplementalGroupsAnnotation: "1000010000/10000", securityv1.MCSAnnotation: "s0:c2,c0"}
	f := newAllocatorFixture(t, tiny, held, bareNamespace("a", "2"), bareNamespace("b", "3"), bareNamespace("c", "4"))
	if got := f.alloc.uidRange.Size(); got != 3 {
		t.Fatalf("range size %d", got)
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if err := f.alloc.allocate(ctx, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	err := f.alloc.allocate(ctx, "c")
	if err == nil || !strings.Contains(err.Error(), "all 3 UID blocks are allocated") {
		t.Errorf("third namespace in a full range: %v", err)
	}
	namespaces := f.namespaces(t)
	if got := namespaces["a"].Annotations[securityv1.UIDRangeAnnotation]; got != "1000000000/10000" {
		t.Errorf("a: %q", got)
	}
	if got := namespaces["b"].Annotations[securityv1.UIDRangeAnnotation]; got != "1000020000/10000" {
		t.Errorf("b: %q", got)
	}
	if got := namespaces["c"].Annotations; len(got) != 0 {
		t.Errorf("c got annotations in a full range: %v", got)
	}
	if len(f.patches(t)["c"]) != 0 {
		t.Error("c was patched")
	}
	// Again, with the informer's view of a and b up to date.
	poll(t, "the informer to see a and b annotated", func() bool {
		for _, name := range []string{"a", "b"} {
			ns, err := f.alloc.lister.Get(name)
			if err != nil || !complete(ns) {
				return false
			}
		}
		return true
	})
	if err := f.alloc.allocate(ctx, "c"); err == nil {
		t.Error("a full range allocated a block")
	}
	// An allocated namespace is left alone.
	if err := f.alloc.allocate(ctx, "a"); err != nil {
		t.Errorf("a again: %v", err)
	}
	// A namespace that is gone is not an error.
	if err := f.alloc.allocate(ctx, "gone"); err != nil {
		t.Errorf("a namespace that does not exist: %v", err)
	}
}

// TestAllocatorRetriesFailedPatches: a patch the API server refuses (a
// conflict: the namespace changed meanwhile) is retried; a block is taken
// only once its patch succeeded, and no two namespaces share one.
func TestAllocatorRetriesFailedPatches(t *testing.T) {
	var names []*corev1.Namespace
	for i := 0; i < 4; i++ {
		names = append(names, bareNamespace(fmt.Sprintf("ns-%d", i), "1"))
	}
	f := newAllocatorFixture(t, defaultRange, names...)
	var mu sync.Mutex
	refused := map[string]bool{}
	f.client.PrependReactor("patch", "namespaces", func(action k8stesting.Action) (bool, k8sruntime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		name := action.(k8stesting.PatchAction).GetName()
		if !refused[name] {
			refused[name] = true
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "namespaces"}, name, fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stopped := make(chan struct{})
	go func() {
		f.alloc.run(ctx)
		close(stopped)
	}()
	var namespaces map[string]*corev1.Namespace
	poll(t, "all namespaces annotated", func() bool {
		namespaces = f.namespaces(t)
		for _, ns := range namespaces {
			if !complete(ns) {
				return false
			}
		}
		return true
	})
	cancel()
	<-stopped // run has returned: taken is no longer written
	final := map[uint32]bool{}
	for name, ns := range namespaces {
		b := blockOf(t, ns)
		if final[b] {
			t.Errorf("block %d handed out twice (%s)", b, name)
		}
		final[b] = true
		if len(f.patches(t)[name]) != 2 {
			t.Errorf("%s: %d patches, want 2 (refused, then accepted)", name, len(f.patches(t)[name]))
		}
	}
	if !reflect.DeepEqual(f.alloc.taken, final) {
		t.Errorf("blocks taken %v, blocks held %v", f.alloc.taken, final)
	}
}

func TestNewAllocatorRejectsBadRange(t *testing.T) {
	client := k8sfake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	for _, r := range []string{"", "garbage", "2000-1000/10", "1000000000-1999999999"} {
		if _, err := newAllocator(client, factory.Core().V1().Namespaces(), r, "s0"); err == nil || !strings.Contains(err.Error(), "--uid-range") {
			t.Errorf("range %q: %v", r, err)
		}
	}
}
