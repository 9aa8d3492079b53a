namespace Vfio.User.Protocol;

/// <summary>
/// The peer broke the protocol in a way that leaves the stream unusable (a size that cannot be framed, too many
/// descriptors, a truncated message): the connection is closed.
/// </summary>
public sealed class VfioUserProtocolException(string message) : VfioException(message);

/// <summary>
/// A command failed: thrown by a server's handler to send an error reply with <see cref="VfioException.ErrorNumber"/>,
/// and by the client when the server sent one.
/// </summary>
public sealed class VfioUserCommandException : VfioException
{
    /// <summary>Creates an exception for <paramref name="command"/> failing with <paramref name="errno"/>.</summary>
    public VfioUserCommandException(Command command, int errno, string detail)
        : base($"vfio-user {command}: {detail}", null, errno, null) => Command = command;

    /// <summary>The command that failed.</summary>
    public Command Command { get; }

    /// <summary>An EINVAL failure: a field of the message is out of range.</summary>
    public static VfioUserCommandException Invalid(Command command, string detail) => new(command, Errno.EINVAL, detail);
}
