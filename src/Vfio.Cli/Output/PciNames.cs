namespace Vfio.Cli.Output;

/// <summary>
/// Names for PCI class codes and capability IDs, which do not need pci.ids: the lists are short and fixed by the
/// PCI-SIG (PCI Code and ID Assignment Specification 1.16: §1 class codes, §2 capability IDs, §3 extended
/// capability IDs; the same numbers as include/uapi/linux/pci_regs.h).
/// </summary>
internal static class PciNames
{
    /// <summary>The class's name: the subclass's when it is a common one, else the base class's.</summary>
    public static string ClassName(uint classCode)
    {
        int baseClass = (int)(classCode >> 16) & 0xFF, subClass = (int)(classCode >> 8) & 0xFF;
        return (baseClass, subClass) switch
        {
            (0x01, 0x00) => "SCSI storage controller",
            (0x01, 0x01) => "IDE interface",
            (0x01, 0x04) => "RAID bus controller",
            (0x01, 0x06) => "SATA controller",
            (0x01, 0x07) => "Serial Attached SCSI controller",
            (0x01, 0x08) => "Non-Volatile memory controller",
            (0x02, 0x00) => "Ethernet controller",
            (0x02, 0x07) => "Infiniband controller",
            (0x03, 0x00) => "VGA compatible controller",
            (0x03, 0x02) => "3D controller",
            (0x04, 0x03) => "Audio device",
            (0x06, 0x00) => "Host bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x06, 0x04) => "PCI bridge",
            (0x07, 0x00) => "Serial controller",
            (0x08, 0x06) => "IOMMU",
            (0x0C, 0x03) => "USB controller",
            (0x0C, 0x05) => "SMBus",
            _ => baseClass switch
            {
                0x00 => "Unclassified device",
                0x01 => "Mass storage controller",
                0x02 => "Network controller",
                0x03 => "Display controller",
                0x04 => "Multimedia controller",
                0x05 => "Memory controller",
                0x06 => "Bridge",
                0x07 => "Communication controller",
                0x08 => "Generic system peripheral",
                0x09 => "Input device controller",
                0x0A => "Docking station",
                0x0B => "Processor",
                0x0C => "Serial bus controller",
                0x0D => "Wireless controller",
                0x0E => "Intelligent controller",
                0x0F => "Satellite communications controller",
                0x10 => "Encryption controller",
                0x11 => "Signal processing controller",
                0x12 => "Processing accelerators",
                0x13 => "Non-Essential Instrumentation",
                0x40 => "Coprocessor",
                0xFF => "Unassigned class",
                _ => "Unknown class",
            },
        };
    }

    /// <summary>The standard capability's name (PCI Code and ID Assignment §2).</summary>
    public static string CapabilityName(byte id) => id switch
    {
        0x01 => "Power Management",
        0x02 => "AGP",
        0x03 => "Vital Product Data",
        0x04 => "Slot Identification",
        0x05 => "MSI",
        0x06 => "CompactPCI Hot Swap",
        0x07 => "PCI-X",
        0x08 => "HyperTransport",
        0x09 => "Vendor Specific",
        0x0A => "Debug Port",
        0x0B => "CompactPCI Central Resource Control",
        0x0C => "PCI Hot-Plug",
        0x0D => "Bridge Subsystem Vendor ID",
        0x0E => "AGP 8x",
        0x0F => "Secure Device",
        0x10 => "PCI Express",
        0x11 => "MSI-X",
        0x12 => "SATA Configuration",
        0x13 => "Advanced Features",
        0x14 => "Enhanced Allocation",
        0x15 => "Flattening Portal Bridge",
        _ => "Unknown",
    };

    /// <summary>The extended capability's name (PCI Code and ID Assignment §3).</summary>
    public static string ExtendedCapabilityName(ushort id) => id switch
    {
        0x0001 => "Advanced Error Reporting",
        0x0002 => "Virtual Channel",
        0x0003 => "Device Serial Number",
        0x0004 => "Power Budgeting",
        0x0005 => "Root Complex Link Declaration",
        0x0006 => "Root Complex Internal Link Control",
        0x0007 => "Root Complex Event Collector Endpoint Association",
        0x0008 => "Multi-Function Virtual Channel",
        0x0009 => "Virtual Channel (MFVC present)",
        0x000A => "RCRB Header",
        0x000B => "Vendor-Specific Extended",
        0x000C => "Configuration Access Correlation",
        0x000D => "Access Control Services",
        0x000E => "Alternative Routing-ID Interpretation",
        0x000F => "Address Translation Services",
        0x0010 => "Single Root I/O Virtualization",
        0x0011 => "Multi-Root I/O Virtualization",
        0x0012 => "Multicast",
        0x0013 => "Page Request",
        0x0015 => "Resizable BAR",
        0x0016 => "Dynamic Power Allocation",
        0x0017 => "TPH Requester",
        0x0018 => "Latency Tolerance Reporting",
        0x0019 => "Secondary PCI Express",
        0x001A => "Protocol Multiplexing",
        0x001B => "Process Address Space ID",
        0x001C => "LN Requester",
        0x001D => "Downstream Port Containment",
        0x001E => "L1 PM Substates",
        0x001F => "Precision Time Measurement",
        0x0020 => "PCI Express over M-PHY",
        0x0021 => "FRS Queueing",
        0x0022 => "Readiness Time Reporting",
        0x0023 => "Designated Vendor-Specific",
        0x0024 => "VF Resizable BAR",
        0x0025 => "Data Link Feature",
        0x0026 => "Physical Layer 16.0 GT/s",
        0x0027 => "Lane Margining at the Receiver",
        0x0028 => "Hierarchy ID",
        0x0029 => "Native PCIe Enclosure Management",
        0x002A => "Physical Layer 32.0 GT/s",
        0x002B => "Alternate Protocol",
        0x002C => "System Firmware Intermediary",
        0x002D => "Shadow Functions",
        0x002E => "Data Object Exchange",
        0x002F => "Device 3",
        0x0030 => "Integrity and Data Encryption",
        0x0031 => "Physical Layer 64.0 GT/s",
        0x0032 => "Flit Logging",
        _ => "Unknown",
    };
}
