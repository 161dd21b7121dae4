from .study import Alignment, PendingRegistration, register_study
