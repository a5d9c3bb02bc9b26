package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/library-go/pkg/security/uid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// allocator gives every namespace the annotations that SCC admission reads
// (a UID block, the same block as supplemental groups, and an MCS label), as
// OpenShift's cluster-policy-controller does: a namespace without them gets
// no pod through any SCC whose strategy is MustRunAs/MustRunAsRange.
//
// Blocks are handed out in order from the configured range (OpenShift's
// default 1000000000-1999999999/10000: block n starts at 1000000000+n*10000);
// block n gets the MCS label of the n-th pair of categories (c1,c0; c2,c0;
// c2,c1; c3,c0; ...), which is unique for every block the range holds. Blocks
// of deleted namespaces are not reused while this process runs.
type allocator struct {
	client kubernetes.Interface
	lister corelisters.NamespaceLister
	queue  workqueue.TypedRateLimitingInterface[string]

	uidRange  *uid.Range
	mcsPrefix string
	next      uint32          // the next block to try
	taken     map[uint32]bool // blocks handed out by this process
}

func newAllocator(client kubernetes.Interface, informer coreinformers.NamespaceInformer, uidRange, mcsPrefix string) (*allocator, error) {
	r, err := uid.ParseRange(uidRange)
	if err != nil {
		return nil, fmt.Errorf("--uid-range %q: %w", uidRange, err)
	}
	a := &allocator{
		client:    client,
		lister:    informer.Lister(),
		queue:     workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		uidRange:  r,
		mcsPrefix: mcsPrefix,
		taken:     map[uint32]bool{},
	}
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && needsAllocation(ns) {
			a.queue.Add(ns.Name)
		}
	}
	_, err = informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	return a, err
}

func needsAllocation(ns *corev1.Namespace) bool {
	for _, key := range []string{securityv1.UIDRangeAnnotation, securityv1.SupplementalGroupsAnnotation, securityv1.MCSAnnotation} {
		if ns.Annotations[key] == "" {
			return true
		}
	}
	return false
}

func (a *allocator) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for {
		name, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		if err := a.allocate(ctx, name); err != nil {
			klog.Warningf("allocating SCC annotations for namespace %s: %v (retrying)", name, err)
			a.queue.AddRateLimited(name)
		} else {
			a.queue.Forget(name)
		}
		a.queue.Done(name)
	}
}

func (a *allocator) allocate(ctx context.Context, name string) error {
	ns, err := a.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !needsAllocation(ns) {
		return nil
	}
	annotations := map[string]string{}
	block, ok := a.existingBlock(ns)
	if !ok {
		if block, err = a.freeBlock(); err != nil {
			return err
		}
		annotations[securityv1.UIDRangeAnnotation] = a.blockAt(block).String()
	}
	if ns.Annotations[securityv1.SupplementalGroupsAnnotation] == "" {
		annotations[securityv1.SupplementalGroupsAnnotation] = a.blockAt(block).String()
	}
	if ns.Annotations[securityv1.MCSAnnotation] == "" {
		annotations[securityv1.MCSAnnotation] = mcsLabel(a.mcsPrefix, block)
	}
	// The resourceVersion makes the patch conditional: a namespace changed
	// meanwhile is looked at again.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": ns.ResourceVersion, "annotations": annotations,
	}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = a.client.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "scc-admission"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	a.taken[block] = true
	klog.V(2).Infof("namespace %s: %v", name, annotations)
	return nil
}

// existingBlock is the block of a namespace's own uid-range annotation, when
// it has one from this range.
func (a *allocator) existingBlock(ns *corev1.Namespace) (uint32, bool) {
	value := ns.Annotations[securityv1.UIDRangeAnnotation]
	if value == "" {
		return 0, false
	}
	b, err := uid.ParseBlock(value)
	if err != nil {
		return 0, false
	}
	ok, n := a.uidRange.Offset(b)
	return n, ok
}

func (a *allocator) blockAt(n uint32) uid.Block {
	b, _ := a.uidRange.BlockAt(n)
	return b
}

// freeBlock is the next block that no namespace holds and that this process
// has not handed out.
func (a *allocator) freeBlock() (uint32, error) {
	inUse := map[uint32]bool{}
	namespaces, err := a.lister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	for _, ns := range namespaces {
		if b, ok := a.existingBlock(ns); ok {
			inUse[b] = true
		}
	}
	blocks := a.uidRange.Size()
	for i := uint32(0); i < blocks; i++ {
		n := (a.next + i) % blocks
		if !inUse[n] && !a.taken[n] {
			a.next = n + 1
			return n, nil
		}
	}
	return 0, fmt.Errorf("all %d UID blocks are allocated", blocks)
}

// mcsLabel is the n-th label of two categories: c1,c0; c2,c0; c2,c1; c3,c0 ...
func mcsLabel(prefix string, n uint32) string {
	high := uint32(1)
	for high*(high+1)/2 <= n {
		high++
	}
	low := n - high*(high-1)/2
	return fmt.Sprintf("%s:c%d,c%d", prefix, high, low)
}
