using System.Runtime.InteropServices;

internal static partial class Interop
{
#pragma warning disable CS8981 // the C names, kept verbatim as Interop names are
    internal static partial class Libc
    {
        // linux/if_tun.h: the TUN/TAP character device's ioctl and interface flags (Documentation/networking/tuntap.rst).
        internal const short IFF_TAP = 0x0002;
        internal const short IFF_NO_PI = 0x1000;

        /// <summary><c>TUNSETIFF</c>, <c>_IOW('T', 202, int)</c>: the size field says int although the argument is an ifreq.</summary>
        internal static readonly nuint TUNSETIFF = Ioctl._IOW<int>('T', 202);

        /// <summary>IFF_VNET_HDR: every frame read or written is preceded by a <c>struct virtio_net_hdr</c> (offload metadata).</summary>
        internal const short IFF_VNET_HDR = 0x4000;

        /// <summary><c>TUNSETOFFLOAD</c>, <c>_IOW('T', 208, unsigned int)</c>: the TUN_F_* offloads this reader accepts.</summary>
        internal static readonly nuint TUNSETOFFLOAD = Ioctl._IOW<uint>('T', 208);

        /// <summary><c>TUNSETVNETHDRSZ</c>, <c>_IOW('T', 216, int)</c>: bytes of the header before each frame (10 by default).</summary>
        internal static readonly nuint TUNSETVNETHDRSZ = Ioctl._IOW<int>('T', 216);

        // TUNSETOFFLOAD's flags: the reader can take frames with a partial checksum, and TCP segments of up to 64 KiB.
        internal const uint TUN_F_CSUM = 0x01;
        internal const uint TUN_F_TSO4 = 0x02;
        internal const uint TUN_F_TSO6 = 0x04;

        // linux/if.h
        internal const int IFNAMSIZ = 16;
        internal const short IFF_UP = 0x1;

        // linux/sockios.h: interface ioctls, issued on any socket (net/socket.c sock_do_ioctl hands them to dev_ioctl).
        internal const uint SIOCGIFFLAGS = 0x8913;
        internal const uint SIOCSIFFLAGS = 0x8914;
        internal const uint SIOCGIFMTU = 0x8921;
        internal const uint SIOCSIFMTU = 0x8922;
        internal const uint SIOCSIFHWADDR = 0x8924;
        internal const uint SIOCGIFHWADDR = 0x8927;

        // linux/if_arp.h: the sa_family of an Ethernet hardware address in SIOCSIFHWADDR.
        internal const ushort ARPHRD_ETHER = 1;

        /// <summary><c>struct sockaddr</c> (16 bytes): here the carrier of a hardware address (sa_data's first 6 bytes).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct sockaddr
        {
            public ushort sa_family;
            public fixed byte sa_data[14];
        }

        /// <summary>
        /// <c>struct ifreq</c> (40 bytes on x86_64): the interface name, then a union of which TUNSETIFF uses ifru_flags,
        /// SIOC[GS]IFMTU ifru_mtu and SIOC[GS]IFHWADDR ifru_hwaddr (linux/if.h's ifr_flags, ifr_mtu, ifr_hwaddr macros).
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct ifreq
        {
            public ifreq_ifrn ifr_ifrn;
            public ifreq_ifru ifr_ifru;

            /// <summary>The anonymous <c>union { char ifrn_name[IFNAMSIZ]; }</c>.</summary>
            [StructLayout(LayoutKind.Sequential)]
            internal unsafe struct ifreq_ifrn
            {
                public fixed byte ifrn_name[IFNAMSIZ];
            }

            /// <summary>The anonymous union after the name: its largest members (ifmap, if_settings) make it 24 bytes.</summary>
            [StructLayout(LayoutKind.Explicit, Size = 24)]
            internal struct ifreq_ifru
            {
                [FieldOffset(0)] public sockaddr ifru_hwaddr;
                [FieldOffset(0)] public short ifru_flags;
                [FieldOffset(0)] public int ifru_mtu;
            }
        }
    }
#pragma warning restore CS8981
}
