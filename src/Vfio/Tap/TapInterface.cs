using System.Net.NetworkInformation;
using System.Text;
using Vfio.Linux;

namespace Vfio.Tap;

/// <summary>
/// The offloads a TAP reader accepts (TUNSETOFFLOAD's TUN_F_* flags): what the kernel may then send on the interface
/// without finishing it first. A TAP created with any of them (or with <see cref="None"/> given explicitly) carries a
/// 12-byte <c>struct virtio_net_hdr</c> (linux/virtio_net.h, the virtio 1.2 §5.1.6 layout with num_buffers) before
/// every frame both ways, read and written with <see cref="TapInterface.Read(Span{byte}, Span{byte}, Span{byte})"/>
/// and <see cref="TapInterface.Write(ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>.
/// </summary>
[Flags]
public enum TapOffloads
{
    /// <summary>The header only: every frame complete, its checksums filled in, at most MTU-sized.</summary>
    None = 0,
    /// <summary>TUN_F_CSUM: frames may carry a partial TCP/UDP checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start/offset).</summary>
    Checksum = 0x01,
    /// <summary>TUN_F_TSO4: TCP over IPv4 segments of up to 64 KiB (gso_type TCPV4, gso_size the MSS). Needs <see cref="Checksum"/>.</summary>
    Tso4 = 0x02,
    /// <summary>TUN_F_TSO6: the same for TCP over IPv6 (gso_type TCPV6). Needs <see cref="Checksum"/>.</summary>
    Tso6 = 0x04,
    /// <summary>TUN_F_TSO_ECN: TSO segments may carry ECN's CWR (gso_type with VIRTIO_NET_HDR_GSO_ECN), set on the first frame only. Needs TSO.</summary>
    TsoEcn = 0x08,
}

/// <summary>
/// A Linux TAP interface (<c>/dev/net/tun</c> with IFF_TAP | IFF_NO_PI, Documentation/networking/tuntap.rst): an
/// Ethernet device of the kernel's whose frames this process reads and writes. What the kernel's IP stack sends on
/// the interface is read here; what is written here the kernel receives as if it had arrived on the wire. The
/// descriptor is non-blocking: the reads and writes never wait.
/// </summary>
/// <remarks>
/// The interface exists while this object is open (it is not made persistent) and lives in the network namespace
/// of the thread that created it; the address, MTU and link flags are set through socket ioctls in that namespace.
/// Needs CAP_NET_ADMIN.
/// </remarks>
public sealed class TapInterface : IDisposable
{
    /// <summary>Longest interface name: IFNAMSIZ less the terminating NUL.</summary>
    public const int MaxNameLength = Interop.Libc.IFNAMSIZ - 1;

    /// <summary>Bytes of an Ethernet header (destination, source, EtherType): a frame is at most this plus the MTU.</summary>
    public const int EthernetHeaderSize = 14;

    private const string CloneDevice = "/dev/net/tun";

    /// <summary>Bytes of the <c>struct virtio_net_hdr</c> before each frame on a TAP with <see cref="HasVirtioHeader"/> (TUNSETVNETHDRSZ).</summary>
    public const int VirtioHeaderSize = 12;

    /// <summary>The largest frame a TAP with <see cref="TapOffloads.Tso4"/> or <see cref="TapOffloads.Tso6"/> hands over: a 64 KiB IP packet and its Ethernet header with one VLAN tag.</summary>
    public const int MaxSegmentFrameSize = 65535 + EthernetHeaderSize + 4;

    private TapInterface(SafeFdHandle handle, string name, TapOffloads? offloads)
    {
        Handle = handle;
        Name = name;
        Offloads = offloads ?? TapOffloads.None;
        HasVirtioHeader = offloads is not null;
    }

    /// <summary>The offloads the kernel was told this reader accepts.</summary>
    public TapOffloads Offloads { get; }

    /// <summary>Whether each frame carries a <see cref="VirtioHeaderSize"/>-byte virtio_net_hdr (IFF_VNET_HDR): created with offloads.</summary>
    public bool HasVirtioHeader { get; }

    /// <summary>The TAP queue's descriptor (for polling it together with other descriptors).</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>The interface's name (the one asked for, or the kernel's pick, <c>tap0</c>, <c>tap1</c> …).</summary>
    public string Name { get; }

    /// <summary>
    /// Creates TAP interface <paramref name="name"/> (null: the kernel picks <c>tapN</c>), or attaches to a persistent
    /// TAP of that name nobody holds, then sets its MAC address and MTU when given and brings it up when
    /// <paramref name="up"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The name is empty, longer than <see cref="MaxNameLength"/> bytes, or not a valid interface name.</exception>
    /// <param name="name">The interface name, or null for the kernel's pick.</param>
    /// <param name="macAddress">The interface's MAC address, or null for the kernel's random one.</param>
    /// <param name="mtu">The interface MTU, or null for the kernel's default (1500).</param>
    /// <param name="up">Bring the interface up.</param>
    /// <param name="offloads">Null: plain frames (<see cref="Read(Span{byte})"/>, <see cref="Write(ReadOnlySpan{byte})"/>).
    /// Otherwise each frame carries a virtio_net_hdr (IFF_VNET_HDR, <see cref="VirtioHeaderSize"/> bytes) and the kernel may
    /// send what these flags allow.</param>
    /// <exception cref="ArgumentException">TSO without <see cref="TapOffloads.Checksum"/> (the kernel refuses it), <see cref="TapOffloads.TsoEcn"/>
    /// without TSO, or a flag this type does not define.</exception>
    /// <exception cref="VfioException">No TUN driver, no privilege, the name is taken by another interface, or the kernel
    /// refused the address, MTU or offloads; the message says which.</exception>
    public static unsafe TapInterface Create(string? name = null, PhysicalAddress? macAddress = null, int? mtu = null, bool up = true, TapOffloads? offloads = null)
    {
        if (offloads is { } o)
        {
            if ((o & ~(TapOffloads.Checksum | TapOffloads.Tso4 | TapOffloads.Tso6 | TapOffloads.TsoEcn)) != 0)
            {
                throw new ArgumentException($"unknown TAP offload flags 0x{(int)o:x}", nameof(offloads));
            }
            // drivers/net/tun.c set_offload: TSO only together with TUN_F_CSUM.
            if ((o & (TapOffloads.Tso4 | TapOffloads.Tso6)) != 0 && (o & TapOffloads.Checksum) == 0)
            {
                throw new ArgumentException("TCP segmentation offload needs TapOffloads.Checksum as well (segments carry partial checksums)", nameof(offloads));
            }
            if ((o & TapOffloads.TsoEcn) != 0 && (o & (TapOffloads.Tso4 | TapOffloads.Tso6)) == 0)
            {
                throw new ArgumentException("TapOffloads.TsoEcn qualifies TSO: give Tso4 or Tso6 with it", nameof(offloads));
            }
        }
        if (name is not null) { ValidateName(name); }
        if (macAddress is not null && macAddress.GetAddressBytes().Length != 6)
        {
            throw new ArgumentException("an Ethernet MAC address has 6 bytes", nameof(macAddress));
        }
        if (mtu is < 68 or > 65535) { throw new ArgumentOutOfRangeException(nameof(mtu), mtu, "the MTU must be 68 to 65535 (RFC 791's minimum, the TAP driver's maximum)"); }

        int fd = Interop.Libc.open(CloneDevice, Interop.Libc.O_RDWR | Interop.Libc.O_NONBLOCK | Interop.Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Errno.Last;
            throw Errno.ToException(errno, $"open {CloneDevice}", hint: errno switch
            {
                Errno.ENOENT or Errno.ENODEV => "the TUN/TAP driver is missing (modprobe tun)",
                Errno.EPERM or Errno.EACCES => "creating a TAP interface needs CAP_NET_ADMIN (run as root)",
                _ => null,
            });
        }
        var handle = new SafeFdHandle(fd);
        try
        {
            var ifr = default(Interop.Libc.ifreq);
            if (name is not null) { WriteName(ref ifr, name); }
            ifr.ifr_ifru.ifru_flags = (short)(Interop.Libc.IFF_TAP | Interop.Libc.IFF_NO_PI | (offloads is null ? 0 : Interop.Libc.IFF_VNET_HDR));
            // SAFETY: ifr lives on this frame for the call; TUNSETIFF reads and writes one struct ifreq.
            if (Interop.Libc.ioctl(fd, Interop.Libc.TUNSETIFF, &ifr) < 0)
            {
                int errno = Errno.Last;
                // drivers/net/tun.c tun_set_iff: EBUSY when the TAP is already attached to a queue, EINVAL when the
                // name belongs to an interface that is not a TAP, EPERM when the TAP belongs to another user.
                throw Errno.ToException(errno, $"TUNSETIFF {name ?? "(any name)"}", hint: errno switch
                {
                    Errno.EBUSY or Errno.EINVAL or Errno.EEXIST => $"interface {name} is already in use (another TAP holds it, or it is not a TAP); pick another --name",
                    Errno.EPERM or Errno.EACCES => "creating a TAP interface needs CAP_NET_ADMIN (run as root)",
                    _ => null,
                });
            }
            if (offloads is { } flags)
            {
                int headerSize = VirtioHeaderSize;
                // SAFETY: headerSize lives on this frame for the call; TUNSETVNETHDRSZ reads one int.
                if (Interop.Libc.ioctl(fd, Interop.Libc.TUNSETVNETHDRSZ, &headerSize) < 0)
                {
                    throw Errno.ToException(Errno.Last, $"TUNSETVNETHDRSZ {VirtioHeaderSize} on {name ?? "a new TAP"}");
                }
                // TUNSETOFFLOAD takes the flags as the argument itself, not through a pointer.
                if (Interop.Libc.ioctl(fd, Interop.Libc.TUNSETOFFLOAD, (nint)(uint)flags) < 0)
                {
                    throw Errno.ToException(Errno.Last, $"TUNSETOFFLOAD {flags} on {name ?? "a new TAP"}");
                }
            }
            var tap = new TapInterface(handle, ReadName(ref ifr), offloads);
            if (macAddress is not null) { tap.SetMacAddress(macAddress); }
            if (mtu is int m) { tap.SetMtu(m); }
            if (up) { tap.SetUp(true); }
            return tap;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads one frame the kernel sent on the interface into <paramref name="frame"/>; returns its length, or 0 when
    /// none is waiting. A frame longer than the span is cut to it (size the span for the MTU plus the Ethernet header).
    /// </summary>
    /// <exception cref="VfioException">The read failed for another reason than an empty queue.</exception>
    /// <exception cref="InvalidOperationException">The TAP carries a virtio_net_hdr per frame: use <see cref="Read(Span{byte}, Span{byte}, Span{byte})"/>.</exception>
    public unsafe int Read(Span<byte> frame)
    {
        if (HasVirtioHeader) { throw HeaderRequired(); }
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = frame)
            {
                // SAFETY: p points at frame.Length writable bytes pinned for the call.
                nint n = Interop.Libc.read(Handle.Fd, p, (nuint)frame.Length);
                if (n >= 0) { return (int)n; }
            }
            return NothingToRead();
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    /// <summary>
    /// Hands one Ethernet frame to the kernel as received on the interface; false when the kernel did not take it
    /// (the interface is down, or its backlog is full: the frame is dropped, as a NIC drops on a full ring).
    /// </summary>
    /// <exception cref="VfioException">The frame was refused for another reason (EFAULT, EBADF: not a drop of one frame).</exception>
    /// <exception cref="InvalidOperationException">The TAP carries a virtio_net_hdr per frame: use <see cref="Write(ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>.</exception>
    public unsafe bool Write(ReadOnlySpan<byte> frame)
    {
        if (HasVirtioHeader) { throw HeaderRequired(); }
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = frame)
            {
                // SAFETY: p points at frame.Length readable bytes pinned for the call.
                if (Interop.Libc.write(Handle.Fd, p, (nuint)frame.Length) >= 0) { return true; }
            }
            return NotTaken();
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    /// <summary>
    /// Reads one frame and its virtio_net_hdr from a TAP with <see cref="HasVirtioHeader"/> (one readv): the header into
    /// <paramref name="header"/> (<see cref="VirtioHeaderSize"/> bytes), the frame into <paramref name="frame"/> and, what
    /// does not fit there, on into <paramref name="overflow"/>. Returns the frame's length (header excluded), or 0 when
    /// none is waiting. A frame longer than both spans together is cut to them.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="header"/> is not <see cref="VirtioHeaderSize"/> bytes.</exception>
    /// <exception cref="InvalidOperationException">The TAP has no header (created without offloads).</exception>
    /// <exception cref="VfioException">The read failed for another reason than an empty queue, or came back shorter than the header.</exception>
    public unsafe int Read(Span<byte> header, Span<byte> frame, Span<byte> overflow)
    {
        RequireHeader(header.Length, "Read(frame)");
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            fixed (byte* h = header)
            fixed (byte* f = frame)
            fixed (byte* o = overflow)
            {
                var iov = stackalloc Interop.Libc.iovec[3];
                iov[0] = new Interop.Libc.iovec { iov_base = h, iov_len = (nuint)header.Length };
                iov[1] = new Interop.Libc.iovec { iov_base = f, iov_len = (nuint)frame.Length };
                iov[2] = new Interop.Libc.iovec { iov_base = o, iov_len = (nuint)overflow.Length };
                // SAFETY: the three spans are pinned for the call and each iovec names exactly one of them.
                nint n = Interop.Libc.readv(Handle.Fd, iov, 3);
                if (n >= VirtioHeaderSize) { return (int)(n - VirtioHeaderSize); }
                if (n >= 0) { throw new VfioException($"TAP {Name} returned {n} bytes, fewer than its {VirtioHeaderSize}-byte virtio_net_hdr"); }
            }
            return NothingToRead();
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    /// <summary>
    /// Hands one frame with its virtio_net_hdr to the kernel (one writev) on a TAP with <see cref="HasVirtioHeader"/>;
    /// false when the kernel did not take it (the interface is down or its backlog is full), as <see cref="Write(ReadOnlySpan{byte})"/>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="header"/> is not <see cref="VirtioHeaderSize"/> bytes.</exception>
    /// <exception cref="InvalidOperationException">The TAP has no header (created without offloads).</exception>
    /// <exception cref="VfioException">The kernel refused the frame for another reason (EFAULT, EBADF: not a drop of one frame).</exception>
    public unsafe bool Write(ReadOnlySpan<byte> header, ReadOnlySpan<byte> frame)
    {
        RequireHeader(header.Length, "Write(frame)");
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            fixed (byte* h = header)
            fixed (byte* f = frame)
            {
                var iov = stackalloc Interop.Libc.iovec[2];
                iov[0] = new Interop.Libc.iovec { iov_base = h, iov_len = (nuint)header.Length };
                iov[1] = new Interop.Libc.iovec { iov_base = f, iov_len = (nuint)frame.Length };
                // SAFETY: both spans are pinned for the call and each iovec names exactly one of them.
                if (Interop.Libc.writev(Handle.Fd, iov, 2) >= 0) { return true; }
            }
            return NotTaken();
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    /// <summary>After a failed read: 0 when the queue was only empty (EAGAIN), else the error.</summary>
    private int NothingToRead()
    {
        int errno = Errno.Last;
        return errno == Errno.EAGAIN ? 0 : throw Errno.ToException(errno, $"read from TAP {Name}");
    }

    /// <summary>After a failed write: false for a drop, else the error.</summary>
    private bool NotTaken()
    {
        int errno = Errno.Last;
        // EIO: the interface is down (tun_get_user drops the frame); EAGAIN/ENOBUFS/ENOMEM: no room; EINVAL: the kernel
        // refused this frame (shorter than an Ethernet header, a header it cannot use). All are drops of one frame:
        // a frame from the wire must not stop the bridge.
        return errno is Errno.EAGAIN or Errno.EIO or Errno.ENOBUFS or Errno.ENOMEM or Errno.EINVAL
            ? false
            : throw Errno.ToException(errno, $"write to TAP {Name}");
    }

    private void RequireHeader(int headerLength, string plainCall)
    {
        if (!HasVirtioHeader) { throw new InvalidOperationException($"TAP {Name} was created without offloads: it carries no virtio_net_hdr (use {plainCall})"); }
        if (headerLength != VirtioHeaderSize) { throw new ArgumentException($"the header span must be {VirtioHeaderSize} bytes", "header"); }
    }

    private InvalidOperationException HeaderRequired() =>
        new($"TAP {Name} carries a virtio_net_hdr before each frame (created with offloads): use the Read/Write overloads that take the header");

    /// <summary>
    /// Waits up to <paramref name="timeoutMilliseconds"/> (0: just looks, -1: no limit) for a frame to read; true
    /// when one is waiting. A signal interrupting the wait counts as "nothing yet".
    /// </summary>
    public unsafe bool WaitReadable(int timeoutMilliseconds)
    {
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            var pfd = new Interop.Libc.pollfd { fd = Handle.Fd, events = Interop.Libc.POLLIN };
            // SAFETY: pfd lives on this frame for the call; one entry.
            int n = Interop.Libc.poll(&pfd, 1, timeoutMilliseconds);
            if (n < 0)
            {
                int errno = Errno.Last;
                return errno == Errno.EINTR ? false : throw Errno.ToException(errno, $"poll on TAP {Name}");
            }
            return n > 0 && (pfd.revents & Interop.Libc.POLLIN) != 0;
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    /// <summary>The interface's MTU (SIOCGIFMTU).</summary>
    public int Mtu
    {
        get
        {
            var ifr = InterfaceIoctl(Interop.Libc.SIOCGIFMTU, "SIOCGIFMTU", static (ref _) => { });
            return ifr.ifr_ifru.ifru_mtu;
        }
    }

    /// <summary>The interface's MAC address (SIOCGIFHWADDR).</summary>
    public unsafe PhysicalAddress MacAddress
    {
        get
        {
            var ifr = InterfaceIoctl(Interop.Libc.SIOCGIFHWADDR, "SIOCGIFHWADDR", static (ref _) => { });
            var bytes = new byte[6];
            for (int i = 0; i < bytes.Length; i++) { bytes[i] = ifr.ifr_ifru.ifru_hwaddr.sa_data[i]; }
            return new PhysicalAddress(bytes);
        }
    }

    /// <summary>Whether the interface is administratively up (IFF_UP in SIOCGIFFLAGS).</summary>
    public bool IsUp => (Flags() & Interop.Libc.IFF_UP) != 0;

    /// <summary>Sets the MTU (SIOCSIFMTU).</summary>
    /// <exception cref="VfioException">The kernel refused it (EINVAL: outside what the TAP driver takes).</exception>
    public void SetMtu(int mtu) =>
        InterfaceIoctl(Interop.Libc.SIOCSIFMTU, $"SIOCSIFMTU {mtu}", (ref r) => r.ifr_ifru.ifru_mtu = mtu);

    /// <summary>Sets the MAC address (SIOCSIFHWADDR with an ARPHRD_ETHER address).</summary>
    /// <exception cref="VfioException">The kernel refused it (EADDRNOTAVAIL: a multicast or all-zero address).</exception>
    public unsafe void SetMacAddress(PhysicalAddress macAddress)
    {
        ArgumentNullException.ThrowIfNull(macAddress);
        byte[] bytes = macAddress.GetAddressBytes();
        if (bytes.Length != 6) { throw new ArgumentException("an Ethernet MAC address has 6 bytes", nameof(macAddress)); }
        InterfaceIoctl(Interop.Libc.SIOCSIFHWADDR, $"SIOCSIFHWADDR {macAddress}", (ref r) =>
        {
            r.ifr_ifru.ifru_hwaddr.sa_family = Interop.Libc.ARPHRD_ETHER;
            for (int i = 0; i < bytes.Length; i++) { r.ifr_ifru.ifru_hwaddr.sa_data[i] = bytes[i]; }
        });
    }

    /// <summary>Brings the interface up or down (IFF_UP through SIOCGIFFLAGS / SIOCSIFFLAGS, the other flags kept).</summary>
    public void SetUp(bool up)
    {
        short flags = Flags();
        short wanted = up ? (short)(flags | Interop.Libc.IFF_UP) : (short)(flags & ~Interop.Libc.IFF_UP);
        InterfaceIoctl(Interop.Libc.SIOCSIFFLAGS, up ? "SIOCSIFFLAGS up" : "SIOCSIFFLAGS down", (ref r) => r.ifr_ifru.ifru_flags = wanted);
    }

    /// <summary>Closes the queue: the interface disappears with it (it was not made persistent).</summary>
    public void Dispose() => Handle.Dispose();

    /// <summary>
    /// What is wrong with <paramref name="name"/> as an interface name, checked the way the kernel's dev_valid_name
    /// does (plus: no <c>%d</c> pattern), or null when it is fine.
    /// </summary>
    public static string? NameProblem(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes == 0 || bytes > MaxNameLength) { return $"an interface name has 1 to {MaxNameLength} bytes; '{name}' has {bytes}"; }
        if (name is "." or ".." || name.Any(c => c is '/' or ':' || char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            return $"'{name}' is not a valid interface name (no '/', ':', whitespace, '.' or '..')";
        }
        return name.Contains('%', StringComparison.Ordinal) ? $"'{name}' is a name pattern; give a fixed name or none" : null;
    }

    private static void ValidateName(string name)
    {
        if (NameProblem(name) is { } problem) { throw new ArgumentException(problem, nameof(name)); }
    }

    private short Flags() => InterfaceIoctl(Interop.Libc.SIOCGIFFLAGS, "SIOCGIFFLAGS", static (ref _) => { }).ifr_ifru.ifru_flags;

    private delegate void FillRequest(ref Interop.Libc.ifreq request);

    // SIOC[GS]IF* are interface ioctls: any socket of the interface's network namespace carries them. An AF_INET
    // datagram socket is the one every tool (iproute2, ifconfig) uses; it sends nothing.
    private unsafe Interop.Libc.ifreq InterfaceIoctl(uint request, string operation, FillRequest fill)
    {
        ObjectDisposedException.ThrowIf(Handle.IsClosed, this);
        var ifr = default(Interop.Libc.ifreq);
        WriteName(ref ifr, Name);
        fill(ref ifr);
        using var socket = new SafeFdHandle(Errno.Check(
            Interop.Libc.socket(Interop.Libc.AF_INET, Interop.Libc.SOCK_DGRAM | Interop.Libc.SOCK_CLOEXEC, 0), "socket(AF_INET, SOCK_DGRAM) for interface ioctls"));
        // SAFETY: ifr lives on this frame for the call; the request reads or writes one struct ifreq.
        if (Interop.Libc.ioctl(socket.Fd, request, &ifr) < 0) { throw Errno.ToException(Errno.Last, $"{operation} on {Name}"); }
        return ifr;
    }

    private static unsafe void WriteName(ref Interop.Libc.ifreq ifr, string name)
    {
        // SAFETY: ifrn_name is IFNAMSIZ bytes; ValidateName (or the kernel, for a name it chose) keeps the name
        // at most IFNAMSIZ - 1 bytes, so the zeroed last byte terminates it.
        fixed (byte* p = ifr.ifr_ifrn.ifrn_name)
        {
            Encoding.UTF8.GetBytes(name, new Span<byte>(p, MaxNameLength));
        }
    }

    private static unsafe string ReadName(ref Interop.Libc.ifreq ifr)
    {
        // SAFETY: ifrn_name is IFNAMSIZ bytes, NUL-terminated by the kernel.
        fixed (byte* p = ifr.ifr_ifrn.ifrn_name)
        {
            var span = new ReadOnlySpan<byte>(p, Interop.Libc.IFNAMSIZ);
            int end = span.IndexOf((byte)0);
            return Encoding.UTF8.GetString(end < 0 ? span[..MaxNameLength] : span[..end]);
        }
    }
}
