// SPDX-License-Identifier: GPL-2.0
/*
 * septum_channel: one end of a Septum channel as a character device, for a
 * userspace agent. UIO-like and thin on purpose: the channel's protocol (queue
 * indices, slots, checksums) stays in Rust userspace (ipc-channel); this driver
 * only maps the end's memory, takes its doorbell interrupt and rings the peer.
 *
 * Each "septum,channel-endpoint-v1" node of the device tree the hypervisor
 * writes becomes /dev/septum/<label> (mode 0600):
 *
 *   mmap   MAP_SHARED only. Offset 0: the end's own region ("septum,own"),
 *          the one it writes. Offset <own size>: the peer's region
 *          ("septum,peer"), read-only (VM_MAYWRITE cleared, so mprotect
 *          cannot add write either). A mapping lies within one region.
 *          An end without one of the two has no such window.
 *   read   exactly 4 bytes: blocks until a doorbell interrupt arrived since
 *          this open file's last read, then returns the interrupt count (u32,
 *          wrapping). O_NONBLOCK gives -EAGAIN when none is pending.
 *   poll   EPOLLIN while an interrupt is pending for this open file; always
 *          writable.
 *   write  exactly 4 bytes: rings the peer (one 32-bit store to the doorbell
 *          page, which the hypervisor traps). The value is ignored. The page
 *          itself is never mapped to userspace.
 *
 * The geometry (slot size, depth, checksum) stays in the device tree, which
 * userspace reads from /proc/device-tree.
 *
 * Memory type: the regions are Normal memory outside Linux's System RAM
 * (refused otherwise), shared with a bare-metal partition on another core
 * that runs with its MMU off, so all its data accesses are Device,
 * non-cacheable. A cacheable mapping here would be a mismatched-attribute
 * alias: our writes could sit in our cache, unseen by the peer, and we could
 * read stale lines. The mapping is therefore Device-nGnRnE
 * (pgprot_noncached), as /dev/mem with O_SYNC gave before; userspace keeps
 * every access aligned (32-bit indices, 16-byte copies), which Device memory
 * requires.
 *
 * The regions and the doorbell page are claimed (request_mem_region), so with
 * IO_STRICT_DEVMEM /dev/mem can no longer reach them while this driver holds
 * the endpoint.
 *
 * Lifetime: bind and unbind through sysfs are suppressed, and an open file
 * holds the module, so an endpoint goes away only at rmmod with no file open.
 * A mapping outlives close and rmmod harmlessly: the memory is the channel's,
 * never Linux's.
 */

#include <linux/atomic.h>
#include <linux/ctype.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#define SEPTUM_LABEL_MAX 32
/* The hypervisor's doorbell is one page of its 4 KiB granule. */
#define SEPTUM_DOORBELL_SIZE SZ_4K

struct septum_range {
	phys_addr_t addr;
	size_t size; /* 0: no such region */
};

struct septum_ep {
	struct miscdevice misc;
	struct septum_range own;
	struct septum_range peer;
	void __iomem *doorbell;
	atomic_t irqs;
	wait_queue_head_t wait;
};

/* One open file: the interrupt count its last read returned. */
struct septum_file {
	struct septum_ep *ep;
	u32 seen;
};

static irqreturn_t septum_irq(int irq, void *data)
{
	struct septum_ep *ep = data;

	atomic_inc(&ep->irqs);
	wake_up_interruptible(&ep->wait);
	return IRQ_HANDLED;
}

static int septum_open(struct inode *inode, struct file *file)
{
	/* misc_open left the miscdevice in private_data. */
	struct septum_ep *ep = container_of(file->private_data,
					    struct septum_ep, misc);
	struct septum_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	f->ep = ep;
	f->seen = atomic_read(&ep->irqs);
	file->private_data = f;
	return 0;
}

static int septum_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

/* True, with the count in *now, if an interrupt came since the last read. */
static bool septum_pending(struct septum_file *f, u32 *now)
{
	*now = atomic_read(&f->ep->irqs);
	return *now != READ_ONCE(f->seen);
}

static ssize_t septum_read(struct file *file, char __user *buf, size_t count,
			   loff_t *ppos)
{
	struct septum_file *f = file->private_data;
	u32 now;
	int ret;

	if (count != sizeof(now))
		return -EINVAL;
	if (file->f_flags & O_NONBLOCK) {
		if (!septum_pending(f, &now))
			return -EAGAIN;
	} else {
		ret = wait_event_interruptible(f->ep->wait,
					       septum_pending(f, &now));
		if (ret)
			return ret;
	}
	if (copy_to_user(buf, &now, sizeof(now)))
		return -EFAULT;
	WRITE_ONCE(f->seen, now);
	return sizeof(now);
}

static ssize_t septum_write(struct file *file, const char __user *buf,
			    size_t count, loff_t *ppos)
{
	struct septum_file *f = file->private_data;
	u32 value;

	if (count != sizeof(value))
		return -EINVAL;
	if (copy_from_user(&value, buf, sizeof(value)))
		return -EFAULT;
	/* writel orders the caller's earlier stores to the regions first. */
	writel(1, f->ep->doorbell);
	return sizeof(value);
}

static __poll_t septum_poll(struct file *file, poll_table *wait)
{
	struct septum_file *f = file->private_data;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;
	u32 now;

	poll_wait(file, &f->ep->wait, wait);
	if (septum_pending(f, &now))
		mask |= EPOLLIN | EPOLLRDNORM;
	return mask;
}

static int septum_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct septum_ep *ep = ((struct septum_file *)file->private_data)->ep;
	unsigned long len = vma->vm_end - vma->vm_start;
	unsigned long own_pages = ep->own.size >> PAGE_SHIFT;
	unsigned long first = vma->vm_pgoff;
	const struct septum_range *r = &ep->own;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (first >= own_pages) {
		r = &ep->peer;
		first -= own_pages;
		if (vma->vm_flags & VM_WRITE)
			return -EACCES;
		vma->vm_flags &= ~VM_MAYWRITE;
	}
	if (first >= r->size >> PAGE_SHIFT ||
	    len > r->size - (first << PAGE_SHIFT))
		return -EINVAL;
	/* Non-cacheable: see the memory type note at the top of this file. */
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	return remap_pfn_range(vma, vma->vm_start, PHYS_PFN(r->addr) + first,
			       len, vma->vm_page_prot);
}

static const struct file_operations septum_fops = {
	.owner = THIS_MODULE,
	.open = septum_open,
	.release = septum_release,
	.read = septum_read,
	.write = septum_write,
	.poll = septum_poll,
	.mmap = septum_mmap,
	.llseek = noop_llseek,
};

/*
 * Reads <address size> (two u64 cells) from @prop into @r, and claims it. An
 * absent property is no region; a present one must be whole pages outside
 * System RAM.
 */
static int septum_region(struct device *dev, const char *prop,
			 struct septum_range *r)
{
	u64 v[2];
	int n = of_property_count_u64_elems(dev->of_node, prop);

	if (n == -EINVAL)
		return 0;
	if (n != 2 || of_property_read_u64_array(dev->of_node, prop, v, 2)) {
		dev_err(dev, "%s: not <address size> in 64-bit cells\n", prop);
		return -EINVAL;
	}
	if (!v[1] || !PAGE_ALIGNED(v[0]) || !PAGE_ALIGNED(v[1]) ||
	    v[0] + v[1] < v[0]) {
		dev_err(dev, "%s: %#llx+%#llx is not whole pages\n",
			prop, v[0], v[1]);
		return -EINVAL;
	}
	if (region_intersects(v[0], v[1], IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		dev_err(dev, "%s: %#llx+%#llx overlaps System RAM\n",
			prop, v[0], v[1]);
		return -EINVAL;
	}
	if (!devm_request_mem_region(dev, v[0], v[1], dev_name(dev))) {
		dev_err(dev, "%s: %#llx+%#llx is claimed already\n",
			prop, v[0], v[1]);
		return -EBUSY;
	}
	r->addr = v[0];
	r->size = v[1];
	return 0;
}

/* A label names a device node: 1 to 32 of [a-z0-9_-]. */
static bool septum_label_ok(const char *label)
{
	size_t i, len = strnlen(label, SEPTUM_LABEL_MAX + 1);

	if (!len || len > SEPTUM_LABEL_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!islower(label[i]) && !isdigit(label[i]) &&
		    label[i] != '_' && label[i] != '-')
			return false;
	return true;
}

static int septum_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct septum_ep *ep;
	const char *label;
	u64 doorbell;
	int irq, ret;

	ep = devm_kzalloc(dev, sizeof(*ep), GFP_KERNEL);
	if (!ep)
		return -ENOMEM;
	atomic_set(&ep->irqs, 0);
	init_waitqueue_head(&ep->wait);

	if (of_property_read_string(dev->of_node, "label", &label) ||
	    !septum_label_ok(label)) {
		dev_err(dev, "label: missing, or not 1-%d of [a-z0-9_-]\n",
			SEPTUM_LABEL_MAX);
		return -EINVAL;
	}
	ret = septum_region(dev, "septum,own", &ep->own);
	if (ret)
		return ret;
	ret = septum_region(dev, "septum,peer", &ep->peer);
	if (ret)
		return ret;
	if (!ep->own.size && !ep->peer.size) {
		dev_err(dev, "septum,own, septum,peer: neither is given\n");
		return -EINVAL;
	}

	if (of_property_read_u64(dev->of_node, "septum,doorbell", &doorbell) ||
	    !IS_ALIGNED(doorbell, SEPTUM_DOORBELL_SIZE)) {
		dev_err(dev, "septum,doorbell: missing, or not a 4 KiB page\n");
		return -EINVAL;
	}
	if (!devm_request_mem_region(dev, doorbell, SEPTUM_DOORBELL_SIZE,
				     dev_name(dev))) {
		dev_err(dev, "septum,doorbell: %#llx is claimed already\n",
			doorbell);
		return -EBUSY;
	}
	ep->doorbell = devm_ioremap(dev, doorbell, SEPTUM_DOORBELL_SIZE);
	if (!ep->doorbell)
		return -ENOMEM;

	/* "septum-<label>" names the interrupt in /proc/interrupts too. */
	ep->misc.name = devm_kasprintf(dev, GFP_KERNEL, "septum-%s", label);
	ep->misc.nodename = devm_kasprintf(dev, GFP_KERNEL, "septum/%s", label);
	if (!ep->misc.name || !ep->misc.nodename)
		return -ENOMEM;

	irq = platform_get_irq(pdev, 0);
	if (irq < 0)
		return dev_err_probe(dev, irq,
				     "interrupts: no doorbell interrupt\n");
	ret = devm_request_irq(dev, irq, septum_irq, 0, ep->misc.name, ep);
	if (ret)
		return dev_err_probe(dev, ret,
				     "interrupts: cannot take IRQ %d\n", irq);

	ep->misc.minor = MISC_DYNAMIC_MINOR;
	ep->misc.mode = 0600;
	ep->misc.fops = &septum_fops;
	ep->misc.parent = dev;
	/* Last: once registered, the device can be opened. */
	ret = misc_register(&ep->misc);
	if (ret)
		return dev_err_probe(dev, ret, "cannot register /dev/%s\n",
				     ep->misc.nodename);
	platform_set_drvdata(pdev, ep);
	dev_info(dev, "/dev/%s: own %zu bytes, peer %zu bytes, IRQ %d\n",
		 ep->misc.nodename, ep->own.size, ep->peer.size, irq);
	return 0;
}

static int septum_remove(struct platform_device *pdev)
{
	struct septum_ep *ep = platform_get_drvdata(pdev);

	misc_deregister(&ep->misc);
	return 0;
}

static const struct of_device_id septum_of_match[] = {
	{ .compatible = "septum,channel-endpoint-v1" },
	{ }
};
MODULE_DEVICE_TABLE(of, septum_of_match);

static struct platform_driver septum_driver = {
	.probe = septum_probe,
	.remove = septum_remove,
	.driver = {
		.name = "septum-channel",
		.of_match_table = septum_of_match,
		.suppress_bind_attrs = true,
	},
};
module_platform_driver(septum_driver);

MODULE_DESCRIPTION("Septum channel endpoints as character devices");
MODULE_LICENSE("GPL");
